"""Two gateway processes sharing one Redis share their stored responses: a conversation started on
one continues on the other (`previous_response_id`), and each stored response expires after the
configured TTL."""

import shutil
import subprocess

import openai
import pytest

from conftest import GATEWAY_KEY, start_gateway
from test_shared_rate_limit import redis_url  # noqa: F401 (the fixture)


def test_a_follow_up_turn_works_on_another_replica(fake_upstream, redis_url):  # noqa: F811
    env = {"RESPONSES_REDIS_URL": redis_url, "RESPONSES_TTL_SECS": "600"}
    a, url_a = start_gateway(fake_upstream, env)
    b, url_b = start_gateway(fake_upstream, env)
    try:
        client_a = openai.OpenAI(base_url=f"{url_a}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20)
        client_b = openai.OpenAI(base_url=f"{url_b}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20)
        first = client_a.responses.create(model="gpt-4o", input="remember me")
        second = client_b.responses.create(model="anthropic.claude-3-haiku-20240307-v1:0",
                                           previous_response_id=first.id, input="and now?")
        assert second.previous_response_id == first.id and second.output_text
        assert client_b.responses.retrieve(first.id).output_text == first.output_text
        if shutil.which("redis-cli"):
            port = redis_url.rsplit(":", 1)[1]
            keys = subprocess.run(["redis-cli", "-p", port, "--scan", "--pattern", f"obs:resp:*:{first.id}"],
                                  capture_output=True, text=True, check=True).stdout.split()
            assert len(keys) == 1, keys
            ttl = int(subprocess.run(["redis-cli", "-p", port, "TTL", keys[0]], capture_output=True, text=True,
                                     check=True).stdout)
            assert 0 < ttl <= 600
        client_a.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            client_b.responses.retrieve(first.id)
    finally:
        for p in (a, b):
            p.terminate()
            p.wait(timeout=15)
