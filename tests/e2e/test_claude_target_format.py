"""`?target_format=bedrock_claude` streams read by the anthropic SDK's own strict stream reader and
message accumulator: if the gateway's event sequence were invalid, these would raise."""

import json

import anthropic
import pytest
from anthropic._streaming import Stream
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent

from conftest import GATEWAY_KEY

UPSTREAMS = ["gpt-4o", "anthropic.claude-3-haiku-20240307-v1:0", "amazon.titan-text-express-v1", "amazon.nova-pro-v1:0"]


def read_claude_stream(gateway, body):
    client = anthropic.Anthropic(api_key="unused", base_url=gateway)
    with client._client.stream(
        "POST",
        f"{gateway}/v1/chat/completions?target_format=bedrock_claude",
        content=json.dumps(body),
        headers={"authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json"},
    ) as resp:
        assert resp.status_code == 200
        stream = Stream(cast_to=RawMessageStreamEvent, response=resp, client=client)
        snapshot, bufs, types = None, {}, []
        for event in stream:
            types.append(event.type)
            snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)
    return snapshot, types


@pytest.mark.parametrize("model", UPSTREAMS)
def test_openai_body_in_claude_stream_out(gateway, model):
    msg, types = read_claude_stream(gateway, {"model": model, "stream": True, "messages": [{"role": "user", "content": "strict parse"}]})
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "You said: strict parse"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["gpt-4o", "anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-pro-v1:0"])
def test_claude_body_with_tools_in_claude_stream_out(gateway, model):
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "model": model,
        "max_tokens": 200,
        "stream": True,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
    }
    msg, _ = read_claude_stream(gateway, body)
    tool = [b for b in msg.content if b.type == "tool_use"][0]
    assert tool.name == "get_weather"
    assert tool.input == {"city": "Paris"}
    assert msg.stop_reason == "tool_use"


def test_claude_complete_target_parses_as_an_anthropic_message(gateway):
    import urllib.request

    req = urllib.request.Request(
        f"{gateway}/v1/chat/completions?target_format=bedrock_claude",
        data=json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        assert r.status == 200
        msg = anthropic.types.Message.model_validate(json.loads(r.read()))
    assert msg.content[0].text == "You said: hi" and msg.stop_reason == "end_turn"
