"""Claude-grade translation through the official SDKs, unmodified: prompt caching, extended thinking
(a two-turn tool loop with signed thinking blocks), structured outputs, documents, guardrails and
n > 1, parsed by the openai, anthropic and boto3 clients' own types, stream accumulators and
structured-output parsers, against Claude on Bedrock, a Converse family (Nova) and OpenAI models
served by the fake upstream."""

import base64
import json

import anthropic
import boto3
import openai
import pydantic
import pytest
from botocore.config import Config

from conftest import GATEWAY_KEY, running_gateway

CLAUDE = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
NOVA = "us.amazon.nova-pro-v1:0"
DEEPSEEK = "us.deepseek.r1-v1:0"
AKID, SECRET = "AKIDFIDELITY", "fidelity/secret"
PDF_B64 = "JVBERi0xLjcKJeLjz9MK"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


class Weather(pydantic.BaseModel):
    answer: str
    city: str


@pytest.fixture(scope="module")
def gw(fake_upstream):
    env = {"GUARDRAILS_ALLOW_CLIENT": "true", "AWS_CLIENT_CREDENTIALS": f"{AKID}:{SECRET}:{GATEWAY_KEY}"}
    with running_gateway(fake_upstream, env) as url:
        yield url


def oai(url):
    return openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0)


def ant(url):
    return anthropic.Anthropic(base_url=url, api_key=GATEWAY_KEY, max_retries=0)


def brt(url):
    return boto3.client("bedrock-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=AKID, aws_secret_access_key=SECRET,
                        config=Config(retries={"max_attempts": 1}))


# --- openai ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model,expected", [(CLAUDE, (132, 100, 20)), (NOVA, (140, 100, 20)), ("gpt-4o-cached", (11, 8, None))])
def test_openai_cache_usage(gw, model, expected):
    messages = [{"role": "system", "content": [{"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral"}}]},
                {"role": "user", "content": "Hi"}]
    r = oai(gw).chat.completions.create(model=model, messages=messages)
    u = r.usage
    assert (u.prompt_tokens, u.prompt_tokens_details.cached_tokens, u.prompt_tokens_details.cache_write_tokens) == expected
    stream = oai(gw).chat.completions.create(model=model, messages=messages, stream=True, stream_options={"include_usage": True})
    last = [c for c in stream][-1]
    assert (last.usage.prompt_tokens, last.usage.prompt_tokens_details.cached_tokens) == expected[:2]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_thinking_tool_loop(gw, stream):
    client = oai(gw)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    first = [{"role": "user", "content": "Weather in Paris?"}]
    kwargs = dict(model=CLAUDE, reasoning_effort="low", max_completion_tokens=4000, tools=tools)
    if stream:
        with client.chat.completions.stream(messages=first, **kwargs) as s:
            reasoning, blocks = "", []
            for event in s:
                if event.type == "chunk" and event.chunk.choices:
                    extra = event.chunk.choices[0].delta.model_extra or {}
                    reasoning += extra.get("reasoning_content") or ""
                    blocks += extra.get("thinking_blocks") or []
            msg = s.get_final_completion().choices[0].message
        blocks = [{"type": "thinking", "thinking": reasoning, "signature": b["signature"]} for b in blocks]
    else:
        msg = client.chat.completions.create(messages=first, **kwargs).choices[0].message
        reasoning, blocks = msg.model_extra["reasoning_content"], msg.model_extra["thinking_blocks"]
    assert reasoning == "Thinking about: Weather in Paris?"
    assert blocks[0]["signature"]
    call = msg.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    history = first + [{"role": "assistant", "content": msg.content, "thinking_blocks": blocks,
                        "tool_calls": [call.model_dump(exclude_none=True)]},
                       {"role": "tool", "tool_call_id": call.id, "content": "21C"}]
    r = client.chat.completions.create(messages=history, **kwargs)
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content.startswith("You said:")


@pytest.mark.parametrize("model", [CLAUDE, NOVA, "gpt-4o"])
def test_openai_parse_structured_output(gw, model):
    client = oai(gw)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    parsed = client.chat.completions.parse(model=model, messages=messages, response_format=Weather).choices[0].message.parsed
    assert parsed == Weather(answer="You said: Weather in Paris?", city="Paris")
    with client.chat.completions.stream(model=model, messages=messages, response_format=Weather) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.parsed == parsed and final.choices[0].finish_reason == "stop"


def test_openai_n_choices_document_and_guardrail(gw):
    client = oai(gw)
    r = client.chat.completions.create(model=CLAUDE, n=2, messages=[{"role": "user", "content": "Hi"}])
    assert [c.index for c in r.choices] == [0, 1] and all(c.message.content == "You said: Hi" for c in r.choices)
    with client.chat.completions.stream(model=NOVA, n=2, messages=[{"role": "user", "content": "Hi"}]) as s:
        final = s.get_final_completion()
    assert [c.message.content for c in final.choices] == ["You said: Hi", "You said: Hi"]
    doc = [{"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF_B64}", "filename": "r.pdf"}},
           {"type": "text", "text": "Summarise"}]
    for model in [CLAUDE, NOVA, "gpt-4o"]:
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": doc}])
        assert r.choices[0].message.content == "You said: Summarise"
    blocked = client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "Hi"}], extra_body={
        "guardrailConfig": {"guardrailIdentifier": "gr-block", "guardrailVersion": "1", "trace": "enabled"}})
    assert blocked.choices[0].finish_reason == "content_filter"
    assert blocked.model_extra["amazon-bedrock-trace"]["guardrail"]["inputAssessment"]["gr-block"]


# --- anthropic ------------------------------------------------------------------------------

@pytest.mark.parametrize("model,expected", [(CLAUDE, (12, 100, 20)), (NOVA, (20, 100, 20)), ("gpt-4o-cached", (3, 8, None))])
def test_anthropic_cache_usage(gw, model, expected):
    kwargs = dict(model=model, max_tokens=100, messages=[{"role": "user", "content": "Hi"}],
                  system=[{"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral"}}])
    u = ant(gw).messages.create(**kwargs).usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == expected
    with ant(gw).messages.stream(**kwargs) as s:
        u = s.get_final_message().usage
    assert (u.input_tokens, u.cache_read_input_tokens) == expected[:2]


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_thinking_tool_loop(gw, stream):
    client = ant(gw)
    kwargs = dict(model=CLAUDE, max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 2048},
                  tools=[{"name": "get_weather", "input_schema": SCHEMA}])
    first = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.messages.stream(messages=first, **kwargs) as s:
            msg = s.get_final_message()
    else:
        msg = client.messages.create(messages=first, **kwargs)
    assert msg.content[0].type == "thinking" and msg.content[0].signature
    tool = next(b for b in msg.content if b.type == "tool_use")
    history = first + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
                       {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "21C"}]}]
    msg = client.messages.create(messages=history, **kwargs)
    assert msg.stop_reason == "end_turn"


def test_anthropic_redacted_and_unsigned_reasoning(gw):
    client = ant(gw)
    thinking = {"type": "enabled", "budget_tokens": 2048}
    msg = client.messages.create(model=CLAUDE, max_tokens=4000, thinking=thinking,
                                 messages=[{"role": "user", "content": "Tell me a secret"}])
    assert [b.type for b in msg.content] == ["thinking", "redacted_thinking", "text"]
    with client.messages.stream(model=DEEPSEEK, max_tokens=4000, thinking=thinking,
                                messages=[{"role": "user", "content": "Hi"}]) as s:
        final = s.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].thinking == "Thinking about: Hi"


@pytest.mark.parametrize("model", [CLAUDE, NOVA, "gpt-4o"])
def test_anthropic_parse_structured_output(gw, model):
    msg = ant(gw).messages.parse(model=model, max_tokens=500, output_format=Weather,
                                 messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert msg.parsed_output == Weather(answer="You said: Weather in Paris?", city="Paris")


# --- boto3 ----------------------------------------------------------------------------------

def test_boto3_cache_points_and_documents(gw):
    client = brt(gw)
    for model, written in [(CLAUDE, 20), (NOVA, 20)]:
        res = client.converse(modelId=model, system=[{"text": "Rules."}, {"cachePoint": {"type": "default"}}],
                              messages=[{"role": "user", "content": [
                                  {"document": {"format": "pdf", "name": "Q3 report", "source": {"bytes": base64.b64decode(PDF_B64)}}},
                                  {"text": "Summarise"}]}])
        assert res["output"]["message"]["content"][0]["text"] == "You said: Summarise"
        assert (res["usage"]["cacheReadInputTokens"], res["usage"]["cacheWriteInputTokens"]) == (100, written)
        events = list(client.converse_stream(modelId=model, system=[{"text": "Rules."}, {"cachePoint": {"type": "default"}}],
                                             messages=[{"role": "user", "content": [{"text": "Hi"}]}])["stream"])
        assert events[-1]["metadata"]["usage"]["cacheReadInputTokens"] == 100


def test_boto3_reasoning_tool_loop(gw):
    client = brt(gw)
    tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": SCHEMA}}}]}
    fields = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    first = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
    res = client.converse(modelId=CLAUDE, messages=first, toolConfig=tools, additionalModelRequestFields=fields,
                          inferenceConfig={"maxTokens": 4000})
    message = res["output"]["message"]
    reasoning = message["content"][0]["reasoningContent"]["reasoningText"]
    assert reasoning["text"] == "Thinking about: Weather in Paris?" and reasoning["signature"]
    tool = next(b["toolUse"] for b in message["content"] if "toolUse" in b)
    history = first + [message, {"role": "user", "content": [{"toolResult": {"toolUseId": tool["toolUseId"], "content": [{"text": "21C"}]}}]}]
    res = client.converse(modelId=CLAUDE, messages=history, toolConfig=tools, additionalModelRequestFields=fields,
                          inferenceConfig={"maxTokens": 4000})
    assert res["stopReason"] == "end_turn"
    events = list(client.converse_stream(modelId=CLAUDE, messages=first, toolConfig=tools, additionalModelRequestFields=fields,
                                         inferenceConfig={"maxTokens": 4000})["stream"])
    deltas = [e["contentBlockDelta"]["delta"]["reasoningContent"] for e in events
              if "contentBlockDelta" in e and "reasoningContent" in e["contentBlockDelta"]["delta"]]
    assert "".join(d.get("text", "") for d in deltas) == reasoning["text"]
    assert any(d.get("signature") == reasoning["signature"] for d in deltas)


def test_boto3_structured_output_and_guardrails(gw):
    client = brt(gw)
    output = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
        "name": "weather", "schema": json.dumps({"type": "object", "properties": {"answer": {"type": "string"}, "city": {"type": "string"}}})}}}}
    for model in [CLAUDE, NOVA]:
        res = client.converse(modelId=model, messages=[{"role": "user", "content": [{"text": "Weather in Paris?"}]}], outputConfig=output)
        assert json.loads(res["output"]["message"]["content"][0]["text"]) == {"answer": "You said: Weather in Paris?", "city": "Paris"}
        assert res["stopReason"] == "end_turn"
    guardrail = {"guardrailIdentifier": "gr-block", "guardrailVersion": "1", "trace": "enabled"}
    res = client.converse(modelId=NOVA, messages=[{"role": "user", "content": [{"text": "Hi"}]}], guardrailConfig=guardrail)
    assert res["stopReason"] == "guardrail_intervened" and res["trace"]["guardrail"]["inputAssessment"]["gr-block"]
    res = client.invoke_model(modelId=CLAUDE, guardrailIdentifier="gr-block", guardrailVersion="1", trace="ENABLED",
                              body=json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
                                               "messages": [{"role": "user", "content": "Hi"}]}))
    body = json.loads(res["body"].read())
    assert body["amazon-bedrock-guardrailAction"] == "INTERVENED" and body["amazon-bedrock-trace"]["guardrail"]
