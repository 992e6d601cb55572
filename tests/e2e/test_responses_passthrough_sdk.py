"""The openai SDK's `responses.create` and `responses.stream` against the gateway binary in front
of an OpenAI upstream configured Responses-capable (`OPENAI_RESPONSES_API=true`): the body goes to
the fake's `/v1/responses` as is, built-in tools included, and its reply comes back as sent."""

import openai
import pytest

from conftest import GATEWAY_KEY, running_gateway


@pytest.fixture(scope="module")
def client(fake_upstream):
    with running_gateway(fake_upstream, {"OPENAI_RESPONSES_API": "true"}) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20)


def test_create_with_a_built_in_tool(client):
    r = client.responses.create(model="gpt-4o", input="news today", tools=[{"type": "web_search_preview"}])
    assert r.id == "resp_upstream_1"  # the upstream's own response, as it sent it
    assert r.status == "completed"
    assert r.output[0].type == "web_search_call"
    assert r.output_text == "Upstream said: news today"
    assert r.usage.input_tokens == 20 and r.usage.output_tokens == 9
    assert r.usage.input_tokens_details.cached_tokens == 5
    assert r.usage.output_tokens_details.reasoning_tokens == 2


def test_previous_response_id_goes_upstream(client):
    r = client.responses.create(model="gpt-4o", input="again", previous_response_id="resp_upstream_1")
    assert r.previous_response_id == "resp_upstream_1"


def test_stream(client):
    with client.responses.stream(model="gpt-4o", input="stream this") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Upstream said: stream this"
    assert final.output_text == text
    assert final.usage.total_tokens == 29
    events = list(client.responses.create(model="gpt-4o", input="raw", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"


def test_a_built_in_tool_on_a_translated_model_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="anthropic.claude-3-haiku-20240307-v1:0", input="x",
                                tools=[{"type": "web_search_preview"}])
    assert e.value.body["param"] == "tools[0].type"
