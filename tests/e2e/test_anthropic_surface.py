"""The anthropic SDK, unmodified, pointed at the gateway's `/v1/messages` with the gateway key:
complete and streamed answers, tool-use round trips and usage, from Claude on Bedrock and gpt-4o."""

import anthropic
import pytest

from conftest import GATEWAY_KEY

MODELS = ["anthropic.claude-3-haiku-20240307-v1:0", "gpt-4o"]
WEATHER = [{"name": "get_weather", "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def sdk(gateway, path=""):
    return anthropic.Anthropic(base_url=gateway + path, api_key=GATEWAY_KEY, max_retries=0)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("path", ["", "/anthropic"])
def test_messages_create(gateway, model, path):
    msg = sdk(gateway, path).messages.create(model=model, max_tokens=64, messages=[{"role": "user", "content": "hello"}])
    assert msg.role == "assistant" and msg.stop_reason == "end_turn"
    assert msg.content[0].type == "text" and msg.content[0].text == "You said: hello"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_messages_stream(gateway, model):
    with sdk(gateway).messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": "stream me"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "You said: stream me"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_round_trip(gateway, model):
    client = sdk(gateway)
    first = [{"role": "user", "content": "Weather in Paris?"}]
    msg = client.messages.create(model=model, max_tokens=64, tools=WEATHER, messages=first)
    assert msg.stop_reason == "tool_use"
    tool = next(b for b in msg.content if b.type == "tool_use")
    assert tool.name == "get_weather" and tool.input == {"city": "Paris"}
    history = first + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
                       {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "21C"},
                                                    {"type": "text", "text": "thanks"}]}]
    msg = client.messages.create(model=model, max_tokens=64, tools=WEATHER, messages=history)
    assert msg.stop_reason == "end_turn"
    assert msg.content[0].text == "You said: thanks"


@pytest.mark.parametrize("model", MODELS)
def test_streamed_tool_use(gateway, model):
    with sdk(gateway).messages.stream(model=model, max_tokens=64, tools=WEATHER,
                                      messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = stream.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    assert tool.name == "get_weather" and tool.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_wrong_key_is_an_anthropic_authentication_error(gateway):
    client = anthropic.Anthropic(base_url=gateway, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="gpt-4o", max_tokens=8, messages=[{"role": "user", "content": "x"}])


def test_bad_request_is_an_anthropic_error(gateway):
    with pytest.raises(anthropic.BadRequestError):
        sdk(gateway).messages.create(model="gpt-4o", max_tokens=8, messages=[{"role": "robot", "content": "x"}])
