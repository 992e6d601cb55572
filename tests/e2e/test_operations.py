"""Operations as a user sees them: one structured JSON log line per request, the CLI's
`check-config`, `--help` and `--version`."""

import json
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from conftest import GATEWAY_KEY, ROOT, _target_dir, start_gateway

EXE = lambda: str(_target_dir() / "debug" / "open-bedrock-server")


def chat(url, body, headers=None):
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.status, r.read()


def test_one_structured_log_line_per_request(fake_upstream):
    proc, url = start_gateway(fake_upstream)
    try:
        chat(url, {"model": "gpt-4o", "messages": [{"role": "user", "content": "log me"}]}, {"x-request-id": "req-log-1"})
        chat(url, {"model": "anthropic.claude-3-haiku-20240307-v1:0", "stream": True, "messages": [{"role": "user", "content": "x"}]}, {"x-request-id": "req-log-2"})
        # A streamed request that fails before its first byte is still logged as a stream.
        try:
            chat(url, {"model": "gpt-fail-500", "stream": True, "messages": [{"role": "user", "content": "x"}]}, {"x-request-id": "req-log-3"})
            raise AssertionError("expected a 502")
        except urllib.error.HTTPError as e:
            assert e.code == 502
        lines = []
        for _ in range(100):
            lines = [json.loads(l) for l in proc.log_lines if l.startswith("{") and '"request"' in l]
            if len([l for l in lines if l.get("request_id", "").startswith("req-log-")]) >= 3:
                break
            time.sleep(0.05)
        by_id = {l["request_id"]: l for l in lines}
        one = by_id["req-log-1"]
        assert one["target"] == "access"
        assert (one["model"], one["provider"], one["format_in"], one["format_out"]) == ("gpt-4o", "openai", "openai", "openai")
        assert one["status"] == 200 and one["attempts"] == 1
        assert one["tokens_in"] == 11 and one["tokens_out"] == 7
        assert one["key_id"] == "key-1"
        assert GATEWAY_KEY not in json.dumps(lines), "the key itself is never logged"
        two = by_id["req-log-2"]
        assert two["stream"] is True and two["provider"] == "bedrock"
        assert two["tokens_out"] > 0 and two["ttft_ms"] <= two["latency_ms"]
        assert two["outcome"] == "complete"
        three = by_id["req-log-3"]
        assert three["stream"] is True and three["status"] == 502 and three["attempts"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def run(*args, env=None):
    base = {"PATH": os.environ.get("PATH", "")}
    return subprocess.run([EXE(), *args], capture_output=True, text=True, env={**base, **(env or {})}, cwd=tempfile.gettempdir(), timeout=30)


def test_help_and_version():
    out = run("--help")
    assert out.returncode == 0
    for flag in ["--config", "--host", "--port", "--no-auth", "check-config"]:
        assert flag in out.stdout, flag
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip().startswith("open-bedrock-server ")


def test_check_config_good_and_broken(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[auth]\napi_keys = ["sk-very-secret-gateway-key"]\n[models.aliases]\nclaude = "anthropic.claude-3-haiku-20240307-v1:0"\n')
    out = run("check-config", "--config", good)
    assert out.returncode == 0, out.stderr
    assert "configuration OK" in out.stdout and 'claude = "anthropic.claude-3-haiku' in out.stdout
    assert "very-secret" not in out.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text("[retry]\nmax_attempt = 3\n")
    out = run("check-config", "--config", bad)
    assert out.returncode == 2
    assert "max_attempt" in out.stderr, out.stderr

    out = run("check-config", env={"PORT": "eighty"})
    assert out.returncode == 2 and "PORT" in out.stderr


def test_refuses_to_start_without_a_key():
    out = run()
    assert out.returncode == 2
    assert "API_KEY" in out.stderr and "--no-auth" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
