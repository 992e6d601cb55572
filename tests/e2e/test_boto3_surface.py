"""Unmodified boto3 `bedrock-runtime` programs pointed at the gateway: only the endpoint and the
credentials change. SigV4 with gateway-issued credentials (`AWS_CLIENT_CREDENTIALS`), and the
Bedrock API-key style (`Authorization: Bearer`), against Claude on Bedrock, Titan and gpt-4o."""

import json
import subprocess

import boto3
import httpx
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import GATEWAY_KEY, start_gateway

CLIENT_AKID = "AKIDE2ECLIENT"
CLIENT_SECRET = "e2e/client+secret"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-text-express-v1"
TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "description": "Current weather",
                                 "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}]}


@pytest.fixture(scope="module")
def surface_gateway(fake_upstream):
    proc, url = start_gateway(fake_upstream, {"AWS_CLIENT_CREDENTIALS": f"{CLIENT_AKID}:{CLIENT_SECRET}:{GATEWAY_KEY}"})
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def client(url, secret=CLIENT_SECRET):
    return boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=CLIENT_AKID, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))


def claude_body(text, **extra):
    return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
                       "messages": [{"role": "user", "content": text}], **extra})


@pytest.mark.parametrize("model", [CLAUDE, "gpt-4o"])
def test_invoke_model_claude_body(surface_gateway, model):
    res = client(surface_gateway).invoke_model(modelId=model, body=claude_body("hello"))
    body = json.loads(res["body"].read())
    assert body["type"] == "message"
    assert body["content"][0] == {"type": "text", "text": "You said: hello"}
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("model", [CLAUDE, "gpt-4o"])
def test_invoke_model_claude_tool_use(surface_gateway, model):
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    res = client(surface_gateway).invoke_model(modelId=model, body=claude_body("Weather?", tools=tools))
    body = json.loads(res["body"].read())
    assert body["stop_reason"] == "tool_use"
    tool = next(b for b in body["content"] if b["type"] == "tool_use")
    assert tool["name"] == "get_weather" and tool["input"] == {"city": "Paris"}


def test_invoke_model_titan(surface_gateway):
    body = json.dumps({"inputText": "User: hi titan\nBot:", "textGenerationConfig": {"maxTokenCount": 50}})
    res = client(surface_gateway).invoke_model(modelId=TITAN, body=body)
    out = json.loads(res["body"].read())
    assert out["results"][0]["outputText"] == "You said: hi titan"
    assert out["inputTextTokenCount"] > 0


@pytest.mark.parametrize("model", [CLAUDE, "gpt-4o"])
def test_invoke_model_with_response_stream_claude(surface_gateway, model):
    res = client(surface_gateway).invoke_model_with_response_stream(modelId=model, body=claude_body("stream me"))
    events = [json.loads(e["chunk"]["bytes"]) for e in res["body"]]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == "You said: stream me"
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] > 0


def test_invoke_model_with_response_stream_titan(surface_gateway):
    body = json.dumps({"inputText": "User: stream titan\nBot:"})
    res = client(surface_gateway).invoke_model_with_response_stream(modelId=TITAN, body=body)
    events = [json.loads(e["chunk"]["bytes"]) for e in res["body"]]
    assert "".join(e["outputText"] for e in events) == "You said: stream titan"
    assert events[-1]["completionReason"] == "FINISH"


@pytest.mark.parametrize("model", [CLAUDE, "gpt-4o"])
def test_converse_tool_round_trip(surface_gateway, model):
    c = client(surface_gateway)
    first = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
    res = c.converse(modelId=model, messages=first, toolConfig=TOOLS, inferenceConfig={"maxTokens": 100})
    assert res["stopReason"] == "tool_use"
    tool = next(b["toolUse"] for b in res["output"]["message"]["content"] if "toolUse" in b)
    assert tool["name"] == "get_weather" and tool["input"] == {"city": "Paris"}
    assert res["usage"]["outputTokens"] > 0
    history = first + [res["output"]["message"], {"role": "user", "content": [
        {"toolResult": {"toolUseId": tool["toolUseId"], "content": [{"json": {"temp_c": 21}}]}}, {"text": "thanks"}]}]
    res = c.converse(modelId=model, messages=history, toolConfig=TOOLS)
    assert res["stopReason"] == "end_turn"
    assert res["output"]["message"]["content"][0]["text"] == "You said: thanks"
    u = res["usage"]
    assert u["totalTokens"] == u["inputTokens"] + u["outputTokens"] + u.get("cacheReadInputTokens", 0) + u.get("cacheWriteInputTokens", 0)


@pytest.mark.parametrize("model", [CLAUDE, "gpt-4o"])
def test_converse_stream(surface_gateway, model):
    res = client(surface_gateway).converse_stream(modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    events = list(res["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-1] == "metadata"
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)
    assert text == "You said: hi"
    assert next(e for e in events if "messageStop" in e)["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"]["outputTokens"] > 0


@pytest.mark.parametrize("model", [CLAUDE, "gpt-4o"])
def test_converse_stream_tool_use(surface_gateway, model):
    res = client(surface_gateway).converse_stream(modelId=model, messages=[{"role": "user", "content": [{"text": "Weather?"}]}], toolConfig=TOOLS)
    events = list(res["stream"])
    start = next(e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e)
    assert start["name"] == "get_weather"
    args = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                   if "contentBlockDelta" in e and "toolUse" in e["contentBlockDelta"]["delta"])
    assert json.loads(args) == {"city": "Paris"}
    assert next(e for e in events if "messageStop" in e)["messageStop"]["stopReason"] == "tool_use"


def test_mid_stream_error_is_raised_by_boto3(surface_gateway):
    res = client(surface_gateway).invoke_model_with_response_stream(
        modelId="anthropic.claude-3-haiku-midstream-error-v1:0", body=claude_body("hi"))
    with pytest.raises(botocore.exceptions.EventStreamError) as err:
        list(res["body"])
    assert err.value.response["Error"]["Code"] == "modelStreamErrorException"


def test_wrong_secret_is_403_invalid_signature(surface_gateway):
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client(surface_gateway, secret="wrong").invoke_model(modelId="gpt-4o", body=claude_body("hi"))
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_validation_error_shape(surface_gateway):
    with pytest.raises(botocore.exceptions.ClientError) as err:
        client(surface_gateway).invoke_model(modelId="gpt-4o", body=json.dumps({"prompt": "hi"}))
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "Malformed input request" in err.value.response["Error"]["Message"]


def test_bedrock_api_key_style_bearer_token(surface_gateway):
    """What Bedrock API-key clients send (`Authorization: Bearer`, no SigV4). boto3's own
    AWS_BEARER_TOKEN_BEDROCK mode refuses plain-HTTP endpoints, so this sends the request directly;
    behind TLS termination boto3 sends exactly this."""
    body = {"messages": [{"role": "user", "content": [{"text": "bearer"}]}]}
    url = f"{surface_gateway}/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    res = httpx.post(url, json=body, headers={"authorization": f"Bearer {GATEWAY_KEY}"})
    assert res.status_code == 200, res.text
    assert res.json()["output"]["message"]["content"][0]["text"] == "You said: bearer"
    res = httpx.post(url, json=body, headers={"authorization": "Bearer not-a-key"})
    assert res.status_code == 403
    assert res.headers["x-amzn-errortype"] == "UnrecognizedClientException"
    assert set(res.json()) == {"message"}
