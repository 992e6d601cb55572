"""Start the real gateway binary in front of the Rust fake upstream, for the SDK end-to-end tests.

Both processes listen on 127.0.0.1 with port 0 and report their address on stdout; both are
killed at the end of the session.
"""

import contextlib
import json
import os
import pathlib
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GATEWAY_KEY = "e2e-gateway-key"


def _target_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def _build() -> None:
    subprocess.run(
        ["cargo", "build", "--quiet", "--features", "redis", "--bin", "open-bedrock-server", "--example", "fake_upstream"],
        cwd=ROOT,
        check=True,
    )


def _read_line(proc: subprocess.Popen, predicate, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        found = predicate(line)
        if found:
            return found
    raise RuntimeError("process did not report its address; output:\n" + "".join(seen))


@pytest.fixture(scope="session")
def fake_upstream():
    _build()
    exe = _target_dir() / "debug" / "examples" / "fake_upstream"
    proc = subprocess.Popen([str(exe), "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        addr = _read_line(proc, lambda l: l.split("listening on ", 1)[1].strip() if "listening on " in l else None)
        yield f"http://{addr}"
    finally:
        proc.kill()
        proc.wait()


def start_gateway(fake_url: str, extra_env=None, args=()):
    exe = _target_dir() / "debug" / "open-bedrock-server"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOST": "127.0.0.1",
        "PORT": "0",
        "API_KEY": GATEWAY_KEY,
        "OPENAI_BASE_URL": f"{fake_url}/v1",
        "OPENAI_API_KEY": "sk-e2e-upstream",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        # Bedrock through aws-config's real default chain (environment credentials), pointed at the fake.
        "BEDROCK_ENABLED": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDFAKEGATEWAY",
        "AWS_SECRET_ACCESS_KEY": "fake/secret/key/for/tests",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": fake_url,
        "AWS_ENDPOINT_URL_BEDROCK": fake_url,
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
        "RETRY_MAX_ATTEMPTS": "3",
        # The README's `mock/…` examples run against this gateway too.
        "MOCK_PROVIDER": "true",
    }
    env.update(extra_env or {})
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd="/")

    def address(line: str):
        try:
            rec = json.loads(line)
        except ValueError:
            return None
        return rec.get("address") if rec.get("message") == "open-bedrock-server listening" else None

    addr = _read_line(proc, address)
    # Keep reading the log so the pipe never fills (a full pipe would block the gateway's writes).
    proc.log_lines = []
    threading.Thread(target=lambda: [proc.log_lines.append(l) for l in proc.stdout], daemon=True).start()
    return proc, f"http://{addr}"


@contextlib.contextmanager
def running_gateway(fake_url: str, extra_env=None):
    """A gateway started with `start_gateway`, stopped (gracefully, else killed) on exit."""
    proc, url = start_gateway(fake_url, extra_env)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def gateway(fake_upstream):
    with running_gateway(fake_upstream) as url:
        yield url
