"""The official openai SDK against the gateway binary, served by the fake Bedrock (which verifies
SigV4 signatures and rejects unknown keys in native bodies)."""

import json

import openai
import pytest

from conftest import GATEWAY_KEY

MODELS = [
    "anthropic.claude-3-haiku-20240307-v1:0",
    "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "amazon.titan-text-express-v1",
    "meta.llama3-1-70b-instruct-v1:0",
    "amazon.nova-pro-v1:0",
    "mistral.mistral-large-2407-v1:0",
]
TOOL_MODELS = [m for m in MODELS if "titan" not in m]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20)


@pytest.mark.parametrize("model", MODELS)
def test_complete(client, model):
    r = client.chat.completions.create(model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello bedrock"}], max_tokens=50)
    assert r.choices[0].message.content == "You said: hello bedrock"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == model
    assert r.id.startswith("chatcmpl-")
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.parametrize("model", MODELS)
def test_stream(client, model):
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "stream bedrock"}], stream=True, stream_options={"include_usage": True})
    text, finish, usage, roles = "", None, None, []
    for chunk in stream:
        if chunk.choices:
            d = chunk.choices[0].delta
            if d.role:
                roles.append(d.role)
            text += d.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert roles == ["assistant"]
    assert text == "You said: stream bedrock"
    assert finish == "stop"
    assert usage is not None and usage.total_tokens > 0


@pytest.mark.parametrize("model", TOOL_MODELS)
def test_tool_calls(client, model):
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "weather in Paris?"}], tools=TOOLS)
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "weather?"}], tools=TOOLS, stream=True)
    args, name, finish = "", None, None
    for chunk in stream:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            name = (tc.function.name if tc.function else None) or name
            args += (tc.function.arguments or "") if tc.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, json.loads(args), finish) == ("get_weather", {"city": "Paris"}, "tool_calls")

    r2 = client.chat.completions.create(
        model=model,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
            {"role": "user", "content": "thanks"},
        ],
    )
    assert r2.choices[0].finish_reason == "stop"
    assert "thanks" in r2.choices[0].message.content


def test_bedrock_errors(client):
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="anthropic.claude-denied-v1:0", messages=[{"role": "user", "content": "x"}])
    assert "123456789012" not in str(e.value)
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="anthropic.claude-fail-500-v1:0", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="anthropic.claude-midstream-error-v1:0", messages=[{"role": "user", "content": "x"}], stream=True):
            pass


def test_models_include_bedrock(client):
    ids = {m.id for m in client.models.list()}
    assert {"anthropic.claude-3-haiku-20240307-v1:0", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "gpt-4o"} <= ids
