"""The openai SDK's `embeddings.create` against the gateway binary: OpenAI, Titan and Cohere models
behind the strict fake upstream (vectors: the first float is the text's length, then i / 1000)."""

import openai
import pytest

from conftest import GATEWAY_KEY


@pytest.fixture()
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20)


def expected(text: str, dims: int):
    return [float(len(text))] + [i / 1000 for i in range(1, dims)]


@pytest.mark.parametrize(
    "model,dims,extra",
    [
        ("text-embedding-3-small", 8, {}),
        ("amazon.titan-embed-text-v2:0", 256, {"dimensions": 256}),
        ("amazon.titan-embed-text-v1", 1536, {}),
        ("cohere.embed-english-v3", 1024, {}),
        ("cohere.embed-multilingual-v3", 1024, {"extra_body": {"input_type": "search_query"}}),
        ("cohere.embed-v4:0", 512, {"dimensions": 512}),
    ],
)
@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
def test_embeddings_create(client, model, dims, extra, encoding_format):
    texts = ["the quick brown fox", "jumps", "over the lazy dog"]
    kwargs = dict(extra)
    if encoding_format:
        kwargs["encoding_format"] = encoding_format
    r = client.embeddings.create(model=model, input=texts, **kwargs)
    assert r.model == model
    assert [d.index for d in r.data] == [0, 1, 2]
    for d, text in zip(r.data, texts):
        if encoding_format == "base64":
            import array
            import base64

            vector = array.array("f", base64.b64decode(d.embedding)).tolist()
        else:
            vector = d.embedding
        assert vector == pytest.approx(expected(text, dims), rel=1e-6)
    assert r.usage.prompt_tokens == 9 and r.usage.total_tokens == 9


def test_one_string_input(client):
    r = client.embeddings.create(model="amazon.titan-embed-text-v2:0", input="hello")
    assert len(r.data) == 1 and r.data[0].embedding[0] == 5.0 and len(r.data[0].embedding) == 1024


def test_unsupported_dimensions_are_a_400_naming_the_param(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="amazon.titan-embed-text-v2:0", input="x", dimensions=300)
    assert e.value.body["param"] == "dimensions"
    assert "256, 512, 1024" in e.value.body["message"]
