"""LangChain against the gateway binary, in front of the fake OpenAI and Bedrock upstreams:
`ChatOpenAI` (incl. `with_structured_output`) and `OpenAIEmbeddings` on `/v1`, `ChatBedrockConverse`
on the Bedrock runtime surface (SigV4 with a client credential the gateway maps to its key), and
`ChatAnthropic` on `/v1/messages` — complete, streamed, and with tool calls."""

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_aws import ChatBedrockConverse
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel

from conftest import GATEWAY_KEY, running_gateway

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
AKID, SECRET = "AKIDLANGCHAINCLIENT", "langchain/secret/for+tests"


@pytest.fixture(scope="module")
def gw(fake_upstream):
    with running_gateway(fake_upstream, {"AWS_CLIENT_CREDENTIALS": f"{AKID}:{SECRET}"}) as url:
        yield url


def get_weather(city: str) -> str:
    """Current weather in a city."""
    return "sunny"


class Place(BaseModel):
    """A place."""

    city: str


def chat_models(gw):
    return [
        ChatOpenAI(base_url=f"{gw}/v1", api_key=GATEWAY_KEY, model="gpt-4o", max_retries=0, timeout=20),
        ChatOpenAI(base_url=f"{gw}/v1", api_key=GATEWAY_KEY, model=CLAUDE, max_retries=0, timeout=20),
        ChatBedrockConverse(model=CLAUDE, endpoint_url=gw, region_name="us-east-1",
                            aws_access_key_id=AKID, aws_secret_access_key=SECRET),
        ChatBedrockConverse(model="gpt-4o", endpoint_url=gw, region_name="us-east-1",
                            aws_access_key_id=AKID, aws_secret_access_key=SECRET),
        ChatAnthropic(base_url=gw, api_key=GATEWAY_KEY, model=CLAUDE, max_retries=0, timeout=20),
        ChatAnthropic(base_url=gw, api_key=GATEWAY_KEY, model="gpt-4o", max_retries=0, timeout=20),
    ]


def text_of(content) -> str:
    """A message's text: a string, or the text blocks of a list (Converse and Anthropic replies)."""
    if isinstance(content, str):
        return content
    return "".join(c.get("text", "") for c in content if isinstance(c, dict))


IDS = ["openai-gpt", "openai-claude", "converse-claude", "converse-gpt", "anthropic-claude", "anthropic-gpt"]


@pytest.mark.parametrize("index", range(6), ids=IDS)
def test_invoke_and_stream(gw, index):
    llm = chat_models(gw)[index]
    reply = llm.invoke("hello langchain")
    assert "hello langchain" in text_of(reply.content)
    assert reply.usage_metadata and reply.usage_metadata["total_tokens"] > 0
    text = ""
    for chunk in llm.stream("stream langchain"):
        text += text_of(chunk.content)
    assert "stream langchain" in text


@pytest.mark.parametrize("index", range(6), ids=IDS)
def test_tool_calls(gw, index):
    llm = chat_models(gw)[index].bind_tools([get_weather])
    question = HumanMessage("weather in Paris?")
    reply = llm.invoke([question])
    assert reply.tool_calls and reply.tool_calls[0]["name"] == "get_weather"
    assert reply.tool_calls[0]["args"] == {"city": "Paris"}
    streamed = None
    for chunk in llm.stream([question]):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed.tool_calls and streamed.tool_calls[0]["args"] == {"city": "Paris"}
    result = ToolMessage("sunny", tool_call_id=reply.tool_calls[0]["id"])
    final = llm.invoke([question, reply, result])
    assert final.content


@pytest.mark.parametrize("model", ["gpt-4o", CLAUDE])
def test_chat_openai_structured_output(gw, model):
    llm = ChatOpenAI(base_url=f"{gw}/v1", api_key=GATEWAY_KEY, model=model, max_retries=0, timeout=20)
    place = llm.with_structured_output(Place).invoke("Paris")
    assert isinstance(place, Place) and place.city


@pytest.mark.parametrize("model,dims", [("text-embedding-3-small", 8), ("amazon.titan-embed-text-v2:0", 1024),
                                        ("cohere.embed-english-v3", 1024), ("cohere.embed-v4:0", 1536)])
def test_openai_embeddings(gw, model, dims):
    # `check_embedding_ctx_length=False` sends the texts (by default LangChain sends tiktoken
    # token ids, which only OpenAI reads, and downloads the tokenizer).
    emb = OpenAIEmbeddings(base_url=f"{gw}/v1", api_key=GATEWAY_KEY, model=model,
                           check_embedding_ctx_length=False, max_retries=0)
    docs = emb.embed_documents(["first doc", "second"])
    assert [len(v) for v in docs] == [dims, dims]
    assert docs[0][0] == 9.0 and docs[1][0] == 6.0
    query = emb.embed_query("query")
    assert len(query) == dims and query[0] == 5.0
