"""The README's two-team example, run as written by two gateway processes sharing one real
redis-server (only the keys file's path and the Redis address are pointed at the test's): each
team gets its models, a team is stopped at its budget on every replica, and the spend shows in
/v1/key/info and in Prometheus. Driven with the official openai SDK."""

import json
import re
import urllib.error
import urllib.request

import openai
import pytest

from conftest import GATEWAY_KEY, ROOT, start_gateway
from test_shared_rate_limit import redis_url  # noqa: F401  (the redis-server fixture)

README = (ROOT / "README.md").read_text()
SECTION = README.split("## Keys, budgets and cost", 1)[1].split("\n## ", 1)[0]
KEYS_TOML, GATEWAY_TOML = re.findall(r"```toml\n(.*?)```", SECTION, re.S)[:2]
TEAM_A, TEAM_B = "sk-team-a-demo", "sk-team-b-demo"


@pytest.fixture()
def two_replicas(fake_upstream, redis_url, tmp_path):  # noqa: F811
    tmp = tmp_path
    (tmp / "keys.toml").write_text(KEYS_TOML)
    gateway_toml = GATEWAY_TOML.replace('"keys.toml"', json.dumps(str(tmp / "keys.toml")))
    gateway_toml, n = re.subn(r'redis_url = "[^"]*"', f'redis_url = "{redis_url}"', gateway_toml)
    assert n == 1, "the README's example shares its budgets through Redis"
    (tmp / "gateway.toml").write_text(gateway_toml)
    procs = [start_gateway(fake_upstream, args=["--config", str(tmp / "gateway.toml")]) for _ in range(2)]
    try:
        yield [url for _, url in procs]
    finally:
        for p, _ in procs:
            p.terminate()
            p.wait(timeout=15)


def client(url, key):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def get(url, path, key):
    req = urllib.request.Request(f"{url}{path}", headers={"authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.read().decode()


def test_two_teams_with_their_own_models_and_budgets_on_two_replicas(two_replicas):
    a, b = two_replicas
    hi = [{"role": "user", "content": "hi"}]

    # Team A: its models, priced from the table (11 in × 2.50 + 7 out × 10.00 per million).
    raw = client(a, TEAM_A).chat.completions.with_raw_response.create(model="gpt-4o", messages=hi)
    assert raw.headers["x-gateway-cost"] == "0.0000975"
    assert raw.parse().choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(b, TEAM_A).chat.completions.create(model="o3", messages=hi)
    assert refused.value.status_code == 403

    # Team B: not gpt-4o; gpt-4o-mini until its 1000 tokens a day are spent, on either replica.
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(a, TEAM_B).chat.completions.create(model="gpt-4o", messages=hi)
    assert "gpt-4o" in str(refused.value)
    admitted = 0
    stopped = None
    for i in range(200):
        try:
            client([a, b][i % 2], TEAM_B).chat.completions.create(model="gpt-4o-mini", messages=hi, max_tokens=16)
            admitted += 1
        except openai.RateLimitError as e:
            stopped = e
            break
    # 18 tokens a call: the 56th call takes the count to 1008 ≥ 1000, the 57th is refused.
    assert admitted == 56, admitted
    body = stopped.response.json()["error"]
    assert body["code"] == "budget_exceeded", body
    assert "tokens_per_day" in body["message"] and "T00:00:00Z" in body["message"], body
    assert int(stopped.response.headers["retry-after"]) >= 1
    for url in (a, b):
        with pytest.raises(openai.RateLimitError):
            client(url, TEAM_B).chat.completions.create(model="gpt-4o-mini", messages=hi, max_tokens=16)
        info = json.loads(get(url, "/v1/key/info", TEAM_B))
        assert info["id"] == "team-b" and info["team"] == "support", info
        assert info["spend"]["tokens_today"] == 1008 and info["spend"]["shared"] is True, info
    # Team A is not affected.
    assert client(b, TEAM_A).chat.completions.create(model="gpt-4o", messages=hi).choices

    metrics = get(a, "/metrics", GATEWAY_KEY)
    assert 'obs_cost_usd_total{key="team-a",model="gpt-4o",provider="openai"} 0.0000975' in metrics, metrics
    assert 'obs_key_rejections_total{key="team-b",reason="tokens_per_day"}' in metrics


def status_of(url, key):
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_sighup_reloads_the_keys_file_and_a_broken_file_keeps_the_old_keys(fake_upstream, tmp_path):
    import signal
    import time

    tmp = tmp_path
    keys = tmp / "keys.toml"
    entry = KEYS_TOML.split("[[keys]]")[2]  # team B's entry, as the README writes it
    keys.write_text("[[keys]]" + entry)
    (tmp / "gateway.toml").write_text(f"[keys]\nfile = {json.dumps(str(keys))}\nreload_interval_ms = 0\n")
    proc, url = start_gateway(fake_upstream, args=["--config", str(tmp / "gateway.toml")])
    try:
        assert status_of(url, TEAM_B) == 200
        assert status_of(url, TEAM_A) == 401
        keys.write_text(KEYS_TOML)  # both teams
        proc.send_signal(signal.SIGHUP)
        for _ in range(200):
            if status_of(url, TEAM_A) != 401:
                break
            time.sleep(0.025)
        assert status_of(url, TEAM_A) == 403, "team A is known now (and mock/echo is not its model)"
        keys.write_text("[[keys]]\nid = broken")
        proc.send_signal(signal.SIGHUP)
        for _ in range(200):
            if any("keys file not loaded" in line for line in proc.log_lines):
                break
            time.sleep(0.025)
        assert any("keys file not loaded" in line for line in proc.log_lines), proc.log_lines[-5:]
        assert status_of(url, TEAM_B) == 200, "the old keys stay in force"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
