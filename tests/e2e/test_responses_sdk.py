"""The openai SDK's Responses API (`responses.create`, `responses.stream`, `retrieve`, `delete`)
against the gateway binary, in front of the fake OpenAI and Claude-on-Bedrock upstreams."""

import json

import openai
import pytest

from conftest import GATEWAY_KEY

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
TOOLS = [{"type": "function", "name": "get_weather", "description": "Current weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20)


@pytest.mark.parametrize("model", ["gpt-4o", CLAUDE])
def test_create(client, model):
    r = client.responses.create(model=model, instructions="Be brief.", input="hello there")
    assert r.status == "completed"
    assert r.id.startswith("resp_")
    assert "hello there" in r.output_text
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


@pytest.mark.parametrize("model", ["gpt-4o", CLAUDE])
def test_stream(client, model):
    with client.responses.stream(model=model, input="stream this") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert "stream this" in text
    assert final.output_text == text
    assert final.status == "completed"
    # The raw event stream, too.
    events = list(client.responses.create(model=model, input="raw", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"


@pytest.mark.parametrize("model", ["gpt-4o", CLAUDE])
def test_tool_loop(client, model):
    first = client.responses.create(model=model, input="weather in Paris?", tools=TOOLS)
    calls = [i for i in first.output if i.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    second = client.responses.create(
        model=model, previous_response_id=first.id, tools=TOOLS,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}],
    )
    assert second.status == "completed" and second.output_text
    assert second.previous_response_id == first.id

    with client.responses.stream(model=model, input="weather in Paris?", tools=TOOLS) as stream:
        args = "".join(e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        final = stream.get_final_response()
    assert json.loads(args) == {"city": "Paris"}
    assert [i.type for i in final.output if i.type == "function_call"] == ["function_call"]


def test_structured_output(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    for model in ["gpt-4o", CLAUDE]:
        r = client.responses.create(model=model, input="Paris",
                                    text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}})
        assert isinstance(json.loads(r.output_text)["city"], str)


def test_built_in_tools_are_a_clear_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=CLAUDE, input="news?", tools=[{"type": "web_search_preview"}])
    assert e.value.body["param"] == "tools[0].type"
    assert "web_search_preview" in e.value.body["message"]
