"""Two gateway processes sharing one Redis share one rate limit: a limit of N per minute plus a
burst admits exactly N + burst requests across both."""

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import json

import pytest

from conftest import GATEWAY_KEY, start_gateway


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def redis_url():
    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def post(url):
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).encode(),
        headers={"authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


def test_two_processes_share_one_limit(fake_upstream, redis_url):
    env = {"REDIS_URL": redis_url, "RATE_LIMIT_REQUESTS_PER_MINUTE": "5", "RATE_LIMIT_BURST": "2"}
    a, url_a = start_gateway(fake_upstream, env)
    b, url_b = start_gateway(fake_upstream, env)
    try:
        statuses = [post(url)[0] for url in [url_a, url_b] * 10]
        assert statuses.count(200) == 7, statuses
        assert statuses.count(429) == 13, statuses
        status, headers = post(url_b)
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        assert headers["x-ratelimit-limit-requests"] == "7"
        assert headers["x-ratelimit-remaining-requests"] == "0"
    finally:
        for p in (a, b):
            p.terminate()
            p.wait(timeout=15)
