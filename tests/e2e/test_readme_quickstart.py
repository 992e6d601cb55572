"""The README's first command and its "Try it" examples, exactly as a newcomer runs them on a fresh
machine: the gateway started with only the README's variables and arguments (no upstream, no AWS
configuration, nothing else in the environment), then every curl and Python example of the
"Try it" section against it. Only the address is changed (the test listens on a free port)."""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, _build, _read_line, _target_dir

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else len(README)]


TWO_COMMANDS = section("The two commands")
TRY_IT = section("Try it (mock provider)")
START = re.findall(r"```sh\n(.*?)```", TWO_COMMANDS, re.S)[0].strip()
CURLS = re.findall(r"^curl .*?(?=\n\n|\n#|\Z)", "\n".join(re.findall(r"```sh\n(.*?)```", TRY_IT, re.S)), re.S | re.M)
PYTHON = re.findall(r"```python\n(.*?)```", TRY_IT, re.S)


def parse_start(command: str):
    """`VAR=value … cargo run --release -- ARGS` → (env, args)."""
    words = shlex.split(command)
    env = {}
    while words and re.match(r"^[A-Z_]+=", words[0]):
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    assert words[:3] == ["cargo", "run", "--release"], command
    args = words[4:] if words[3:4] == ["--"] else words[3:]
    return env, args


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    _build()
    env_vars, args = parse_start(START)
    home = str(tmp_path_factory.mktemp("quickstart-home"))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": home,
        **env_vars,
        # Only the address differs from the README: a free port on loopback, JSON logs to find it.
        "HOST": "127.0.0.1",
        "PORT": "0",
        "LOG_FORMAT": "json",
    }
    exe = _target_dir() / "debug" / "open-bedrock-server"
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=home)

    def address(line: str):
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        return rec.get("address") if rec.get("message") == "open-bedrock-server listening" else None

    addr = _read_line(proc, address)
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    try:
        yield f"http://{addr}"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_the_start_command_is_the_mock_quickstart():
    env, args = parse_start(START)
    assert "--mock" in args and env.get("API_KEY") == "my-gateway-key", START
    assert len(CURLS) >= 5 and len(PYTHON) >= 2, (CURLS, PYTHON)
    assert all('"mock/' in c for c in CURLS)


def sse_data(body: str):
    return [l[len("data: "):] for l in body.splitlines() if l.startswith("data: ")]


@pytest.mark.parametrize("command", CURLS, ids=[f"curl-{i}" for i in range(len(CURLS))])
def test_try_it_curl(quickstart, command):
    cmd = command.replace("http://localhost:8000", quickstart)
    cmd = cmd.replace("curl ", "curl --max-time 20 -w '\\n%{http_code}' ", 1)
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "200", body
    if '"stream":true' in command:
        events = [json.loads(e) for e in sse_data(body) if e != "[DONE]"]
        assert events and not any("error" in e for e in events), body
        if "bedrock_titan" in command:
            text = "".join(e["outputText"] for e in events)
            assert text.startswith("You said: Write a haiku"), body
            assert events[-1]["completionReason"] == "FINISH"
        else:
            assert sse_data(body)[-1] == "[DONE]"
            text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
            assert text == "You said: Count to three"
            assert events[-1]["usage"]["completion_tokens"] == 5
    else:
        reply = json.loads(body)
        if "bedrock_claude" in command:
            assert reply["type"] == "message" and reply["content"][0]["text"] == "You said: Hello!"
            assert reply["stop_reason"] == "end_turn"
        elif '"tools"' in command:
            call = reply["choices"][0]["message"]["tool_calls"][0]
            assert call["function"]["name"] == "get_weather"
            assert json.loads(call["function"]["arguments"]) == {"city": "example"}
            assert reply["choices"][0]["finish_reason"] == "tool_calls"
        else:
            assert reply["choices"][0]["message"]["content"] == "You said: Hello!"
            assert reply["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("snippet", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_try_it_python(quickstart, snippet):
    code = snippet.replace("http://localhost:8000", quickstart)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "You said: Hello" in out.stdout, out.stdout
    if "chat.completions" in snippet:
        assert "You said: Count to three" in out.stdout, out.stdout
