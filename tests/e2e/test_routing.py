"""Routing across deployments with the official openai SDK: the README's routing example (two
Bedrock regions and one OpenAI deployment behind one model name), run as written by the gateway
binary in front of fake upstreams — only each provider is pointed at its fake. One region is
killed, one throttled, then both, and the client keeps getting answers."""

import json
import re
import subprocess
import tempfile
import time

import openai
import pytest

from conftest import GATEWAY_KEY, ROOT, _read_line, _target_dir, start_gateway

README = (ROOT / "README.md").read_text()
ROUTING = README.split("### Across deployments", 1)[1].split("\n## ", 1)[0]
TOML = re.findall(r"```toml\n(.*?)```", ROUTING, re.S)[0]
MODEL = "claude-sonnet"


def start_fake(*args):
    exe = _target_dir() / "debug" / "examples" / "fake_upstream"
    proc = subprocess.Popen([str(exe), "127.0.0.1:0", *args], stdout=subprocess.PIPE, text=True)
    addr = _read_line(proc, lambda l: l.split("listening on ", 1)[1].strip() if "listening on " in l else None)
    return proc, f"http://{addr}"


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=15)


def config_file(directory, east, west, openai_url):
    """The README's file with each provider pointed at its fake."""
    text = TOML
    for region, url in [("us-east-1", east), ("us-west-2", west)]:
        text, n = re.subn(rf'^(region = "{region}".*)$', rf'\1\nendpoint_url = "{url}"', text, count=1, flags=re.M)
        assert n == 1, f"the README's example has no {region} provider"
    assert "https://api.openai.com/v1" in text
    text = text.replace("https://api.openai.com/v1", f"{openai_url}/v1")
    with tempfile.NamedTemporaryFile("w", suffix=".toml", dir=directory, delete=False) as f:
        f.write(text)
    return f.name


@pytest.fixture()
def routing(fake_upstream, tmp_path):
    """Fakes for the two regions (started by the test) and the gateway over the README's file; the
    session's fake serves the OpenAI deployment."""
    started = []

    def start(east_args=(), west_args=()):
        east, east_url = start_fake(*east_args)
        west, west_url = start_fake(*west_args)
        path = config_file(tmp_path, east_url, west_url, fake_upstream)
        # OPENAI_API_KEY is what the README's `api_key_env` names; AWS credentials come from the
        # default chain (environment), as in production.
        gw, url = start_gateway(fake_upstream, {"OPENAI_API_KEY": "sk-e2e-upstream"}, args=("--config", path))
        started.extend([gw, east, west])
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20)
        return client, gw, east, west

    yield start
    for p in started:
        stop(p)


def ask(client, text, stream=False):
    """One request; returns (answer text, deployment that served it)."""
    messages = [{"role": "user", "content": text}]
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, stream=stream)
    deployment = raw.headers.get("x-gateway-deployment")
    parsed = raw.parse()
    if stream:
        answer = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
    else:
        answer = parsed.choices[0].message.content
    return answer, deployment


def access_lines(gw, count):
    for _ in range(200):
        lines = [json.loads(l) for l in gw.log_lines if l.startswith("{") and '"request"' in l]
        lines = [l for l in lines if l.get("target") == "access" and l.get("model") == MODEL]
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"expected {count} access lines, got {len(lines)}")


def test_the_example_is_valid_and_lists_the_group(routing):
    client, _gw, _east, _west = routing()
    assert MODEL in [m.id for m in client.models.list().data]


def test_both_regions_serve_and_openai_waits(routing):
    client, _gw, _east, _west = routing()
    seen = set()
    for i in range(30):
        answer, deployment = ask(client, f"hello {i}", stream=i % 2 == 1)
        assert answer == f"You said: hello {i}"
        seen.add(deployment)
    assert seen == {"bedrock-us-east-1", "bedrock-us-west-2"}, seen


def test_a_killed_region_is_routed_around(routing):
    client, gw, east, _west = routing()
    stop(east)
    for i in range(20):
        answer, deployment = ask(client, f"still there {i}", stream=i % 2 == 0)
        assert answer == f"You said: still there {i}"
        assert deployment == "bedrock-us-west-2"
    lines = access_lines(gw, 20)
    attempts = " ".join(l["attempt_log"] for l in lines)
    assert "bedrock-us-east-1:connect_error" in attempts, attempts
    assert all(l["status"] == 200 and l["deployment"] == "bedrock-us-west-2" for l in lines)


def test_a_throttled_region_is_routed_around(routing):
    client, gw, _east, _west = routing(west_args=("--throttle",))
    for i in range(20):
        answer, deployment = ask(client, f"busy {i}", stream=i % 2 == 0)
        assert answer == f"You said: busy {i}"
        assert deployment == "bedrock-us-east-1"
    attempts = " ".join(l["attempt_log"] for l in access_lines(gw, 20))
    assert "bedrock-us-west-2:http_429" in attempts, attempts


def test_both_regions_down_falls_back_to_openai(routing):
    client, gw, east, _west = routing(west_args=("--throttle",))
    stop(east)
    for i in range(10):
        answer, deployment = ask(client, f"anyone {i}", stream=i % 2 == 1)
        assert answer == f"You said: anyone {i}"
        assert deployment == "openai-prod"
    line = access_lines(gw, 10)[0]
    assert line["provider"] == "openai-prod" and line["fallbacks"] >= 1, line


def test_a_named_profile_supplies_its_own_credentials(fake_upstream, tmp_path):
    """`profile = "partner"`: that profile's credentials and region, not the environment's."""
    aws_config = str(tmp_path / "aws-config")
    with open(aws_config, "w") as f:
        f.write("[profile partner]\nregion = eu-west-1\n"
                "aws_access_key_id = AKIDFAKEGATEWAY\naws_secret_access_key = fake/secret/key/for/tests\n")
    path = str(tmp_path / "gateway.toml")
    with open(path, "w") as f:
        f.write(f'[providers.partner]\nkind = "bedrock"\nprofile = "partner"\nendpoint_url = "{fake_upstream}"\n'
                '[model_groups.partner-claude]\n'
                'deployments = [{ provider = "partner", model = "anthropic.claude-3-haiku-20240307-v1:0" }]\n')
    # The environment's credentials are wrong: only the profile's can work.
    env = {"AWS_CONFIG_FILE": aws_config, "AWS_ACCESS_KEY_ID": "AKIDWRONGWRONG", "AWS_SECRET_ACCESS_KEY": "wrong"}
    gw, url = start_gateway(fake_upstream, env, args=("--config", path))
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20)
        raw = client.chat.completions.with_raw_response.create(
            model="partner-claude", messages=[{"role": "user", "content": "profile"}])
        assert raw.parse().choices[0].message.content == "You said: profile"
        assert raw.headers.get("x-gateway-provider") == "partner"
        # The implicit `bedrock` provider has the environment's (wrong) credentials.
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(
                model="anthropic.claude-3-haiku-20240307-v1:0", messages=[{"role": "user", "content": "x"}])
    finally:
        stop(gw)
