"""The official openai SDK against the gateway binary, in front of an OpenAI-compatible fake."""

import json

import openai
import pytest

from conftest import GATEWAY_KEY


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20)


def test_complete(client):
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content == "You said: hello"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 11 and r.usage.completion_tokens == 7 and r.usage.total_tokens == 18
    assert r.model == "gpt-4o"


def test_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "You said: stream please"
    assert finish == "stop"
    assert usage is not None and usage.total_tokens == 18


def test_tool_calls_complete_and_streamed(client):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "weather?"}], tools=tools, stream=True)
    args, name, call_id, finish = "", None, None, None
    for chunk in stream:
        for tc in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            call_id = tc.id or call_id
            name = (tc.function.name if tc.function else None) or name
            args += (tc.function.arguments or "") if tc.function else ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert (call_id, name, json.loads(args), finish) == ("call_fake1", "get_weather", {"city": "Paris"}, "tool_calls")

    # The tool round trip: the result goes back and the model answers.
    r2 = client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
        ],
        tools=tools,
    )
    assert r2.choices[0].message.content.startswith("You said:")


def test_errors_map_to_sdk_exceptions(gateway, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gateway}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="gpt-fail-500", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=[])


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o" in ids and "gpt-4o-mini" in ids
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
