"""A Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`) instead of SigV4 credentials: the gateway's own
Bedrock client sends it as a bearer token, which the fake Bedrock accepts only with the right key."""

import json
import urllib.error
import urllib.request

from conftest import GATEWAY_KEY, start_gateway

NO_SIGV4 = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}


def chat(url, model):
    req = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": "api key"}]}).encode(),
        headers={"authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_bedrock_api_key_is_used(fake_upstream):
    proc, url = start_gateway(fake_upstream, {**NO_SIGV4, "AWS_BEARER_TOKEN_BEDROCK": "ABSKfakebedrockapikey"})
    try:
        for model in ["anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-pro-v1:0"]:
            status, body = chat(url, model)
            assert status == 200, body
            assert body["choices"][0]["message"]["content"] == "You said: api key"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_wrong_bedrock_api_key_is_an_upstream_auth_error(fake_upstream):
    proc, url = start_gateway(fake_upstream, {**NO_SIGV4, "AWS_BEARER_TOKEN_BEDROCK": "ABSKwrong"})
    try:
        status, body = chat(url, "anthropic.claude-3-haiku-20240307-v1:0")
        assert status == 500, body
        assert body["error"]["code"] == "upstream_auth_error"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
