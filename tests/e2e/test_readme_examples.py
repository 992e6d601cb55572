"""Every curl example of the README, run as written (only the address and key are pointed at the
test gateway, which is served by the fake upstreams, and lets clients name a guardrail as the
README's guardrail example does)."""

import json
import pathlib
import re
import subprocess

import pytest

from conftest import GATEWAY_KEY, ROOT, running_gateway

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)
CURLS = []
for block in BLOCKS:
    # A command starts at a line beginning with `curl` and runs over its indented continuation
    # lines (backslash continuations and multi-line quoted JSON alike).
    current = None
    for line in block.splitlines():
        if line.startswith("curl "):
            if current:
                CURLS.append(current)
            current = line
        elif current is not None and line.startswith((" ", "\t")):
            current += "\n" + line
        else:
            if current:
                CURLS.append(current)
            current = None
    if current:
        CURLS.append(current)


@pytest.fixture(scope="module")
def readme_gateway(fake_upstream):
    # The README's guardrail example names its own guardrail, which the gateway must allow.
    with running_gateway(fake_upstream, {"GUARDRAILS_ALLOW_CLIENT": "true"}) as url:
        yield url


def test_readme_has_curl_examples():
    assert len(CURLS) >= 5, CURLS


@pytest.mark.parametrize("command", CURLS, ids=[f"curl-{i}" for i in range(len(CURLS))])
def test_curl_example_works(readme_gateway, command):
    cmd = command.replace("http://localhost:8000", readme_gateway).replace("my-gateway-key", GATEWAY_KEY)
    cmd = cmd.replace("curl ", "curl --max-time 20 -w '\\n%{http_code}' ", 1)
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "200", body
    if '"stream":true' in command:
        events = [l[len("data: "):] for l in body.splitlines() if l.startswith("data: ")]
        assert events, body
        parsed = [json.loads(e) for e in events if e != "[DONE]"]
        assert not any("error" in p for p in parsed), body
    else:
        reply = json.loads(body)
        # A Response object always has `error` (null when it succeeded).
        assert reply.get("error") is None, reply
        text = json.dumps(reply)
        if '"tools"' in command:
            assert reply["choices"][0]["message"]["tool_calls"], reply
        elif "/v1/responses" in command:
            assert reply["status"] == "completed", reply
            assert "You said:" in reply["output"][0]["content"][0]["text"], reply
        elif "/v1/embeddings" in command:
            assert reply["object"] == "list" and reply["data"] and reply["usage"]["total_tokens"] > 0, reply
        else:
            assert "You said:" in text, reply
