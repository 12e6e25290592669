"""The official OpenAI Python SDK, unchanged, against `switchyard demo` on its other two doors:
the Responses API (`/v1/responses`, stateless: text, instructions, a function call round trip,
JSON schema output, streaming, stateful requests refused) and embeddings (`/v1/embeddings`:
several inputs, base64 and float, `dimensions`, the `embed` route)."""

import json
import math
import uuid

import openai
import pydantic
import pytest

from conftest import DEMO_MODELS

INSTRUCTIONS = "You are terse."

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
CLOCK_TOOL = {
    "type": "function",
    "name": "get_time",
    "description": "The current time in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}

FORECAST_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "celsius": {"type": "number"},
        "rain": {"type": "boolean"},
        "days": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "sky": {"type": "string", "enum": ["clear", "cloudy", "overcast"]},
    },
    "required": ["city", "celsius", "rain", "days", "tags", "sky"],
    "additionalProperties": False,
}

# A model of each provider kind.
MODELS = ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash"]

# Vector lengths of the demo's embedding models when no `dimensions` is asked.
EMBEDDING_DEFAULTS = {
    "text-embedding-3-small": 1536,
    "gemini-embedding-001": 3072,
    "nomic-embed-text": 768,
}


def _unique(text):
    """A prompt no other test sends, so no cached answer stands in for the upstream's."""
    return f"{text} ({uuid.uuid4().hex})"


def _assert_usage(r):
    assert r.usage.input_tokens > 0
    assert r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


# --- responses.create --------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_create_text_with_instructions(client, model):
    raw = client.responses.with_raw_response.create(
        model=model, input=_unique("Say hello."), instructions=INSTRUCTIONS, max_output_tokens=64
    )
    assert raw.headers["x-switchyard-model"] == model
    r = raw.parse()
    assert r.object == "response"
    assert r.id.startswith("resp_"), r.id
    assert r.status == "completed", r
    assert r.model == model
    assert r.instructions == INSTRUCTIONS
    assert r.max_output_tokens == 64
    assert r.output_text.strip()
    messages = [item for item in r.output if item.type == "message"]
    assert len(messages) == 1 and messages[0].role == "assistant"
    assert messages[0].content[0].type == "output_text"
    _assert_usage(r)
    assert r.usage.output_tokens <= 64


def test_create_with_input_items_and_a_route(client):
    r = client.responses.create(
        model="cheap",
        input=[
            {"role": "developer", "content": "Answer in one word."},
            {"role": "user", "content": [{"type": "input_text", "text": "Name a colour."}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Blue."}]},
            {"role": "user", "content": _unique("Another one.")},
        ],
        max_output_tokens=64,
    )
    assert r.model in DEMO_MODELS, r.model
    assert r.status == "completed"
    assert r.output_text.strip()


def test_max_output_tokens_makes_an_incomplete_response(client):
    r = client.responses.create(
        model="gpt-4o-mini", input=_unique("Tell me a long story."), max_output_tokens=3
    )
    assert r.status == "incomplete", r
    assert r.incomplete_details.reason == "max_output_tokens"
    assert 0 < r.usage.output_tokens <= 3


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-3-5-haiku"])
def test_function_call_round_trip(client, model):
    conversation = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.responses.create(
        model=model,
        input=conversation,
        tools=[CLOCK_TOOL, WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "get_weather"
    assert call.call_id
    args = json.loads(call.arguments)
    assert isinstance(args.get("city"), str), args

    # The documented loop: the output items go back as the SDK returned them, then the result.
    second = client.responses.create(
        model=model,
        input=[
            *conversation,
            *first.output,
            {"type": "function_call_output", "call_id": call.call_id, "output": "18C, cloudy"},
        ],
        tools=[CLOCK_TOOL, WEATHER_TOOL],
    )
    assert second.status == "completed", second
    assert not [item for item in second.output if item.type == "function_call"], second.output
    assert second.output_text.strip()


@pytest.mark.parametrize("model", MODELS)
def test_json_schema_output(client, model):
    r = client.responses.create(
        model=model,
        input=_unique("A forecast for Oslo, as JSON."),
        text={
            "format": {
                "type": "json_schema",
                "name": "forecast",
                "schema": FORECAST_SCHEMA,
                "strict": True,
            }
        },
    )
    assert r.text.format.type == "json_schema"
    v = json.loads(r.output_text)
    assert set(v) == set(FORECAST_SCHEMA["required"]), v
    assert isinstance(v["city"], str)
    assert isinstance(v["celsius"], (int, float)) and not isinstance(v["celsius"], bool)
    assert isinstance(v["rain"], bool)
    assert isinstance(v["days"], int) and not isinstance(v["days"], bool)
    assert isinstance(v["tags"], list) and all(isinstance(t, str) for t in v["tags"])
    assert v["sky"] in ("clear", "cloudy", "overcast")


class Forecast(pydantic.BaseModel):
    city: str
    celsius: float
    rain: bool


def test_responses_parse_with_a_pydantic_model(client):
    r = client.responses.parse(
        model="gpt-4o-mini", input=_unique("A forecast for Rome."), text_format=Forecast
    )
    assert isinstance(r.output_parsed, Forecast), r.output_text


# --- responses.stream --------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-3-5-haiku"])
def test_stream_text(client, model):
    kinds, deltas, numbers = [], [], []
    with client.responses.stream(
        model=model, input=_unique("Say hello."), instructions=INSTRUCTIONS
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            numbers.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert kinds[0] == "response.created", kinds
    assert kinds[-1] == "response.completed", kinds
    for kind in (
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kind in kinds, (kind, kinds)
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    assert "".join(deltas).strip()
    assert final.output_text == "".join(deltas)
    assert final.status == "completed"
    assert final.model == model
    _assert_usage(final)


def test_stream_function_call(client):
    with client.responses.stream(
        model="gemini-2.0-flash",
        input=_unique("Weather in Lima?"),
        tools=[WEATHER_TOOL],
        tool_choice="required",
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds, kinds
    assert "response.function_call_arguments.done" in kinds, kinds
    assert kinds[-1] == "response.completed", kinds
    call = next(item for item in final.output if item.type == "function_call")
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)


def test_stream_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError):
        with client.responses.stream(model="gpt-9-ultra", input="Hi") as stream:
            stream.get_final_response()


def test_deterministic_response_is_answered_from_the_cache(client):
    kwargs = dict(
        model="gemini-2.0-flash", input=_unique("Cache me."), max_output_tokens=16, temperature=0
    )
    first = client.responses.with_raw_response.create(**kwargs)
    second = client.responses.with_raw_response.create(**kwargs)
    assert first.headers["x-switchyard-cache"] == "miss"
    assert second.headers["x-switchyard-cache"] == "hit"
    a, b = first.parse(), second.parse()
    assert b.output_text == a.output_text and a.output_text.strip()
    assert b.usage.output_tokens == a.usage.output_tokens


# --- stateless: what needs a store is refused ----------------------------------------------------


def test_store_true_is_refused(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt-4o-mini", input="Hi", store=True)
    assert e.value.body["param"] == "store", e.value.body
    assert "stateful mode is not supported" in e.value.body["message"], e.value.body


def test_previous_response_id_is_refused(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(
            model="gpt-4o-mini", input="And then?", previous_response_id="resp_0123456789abcdef"
        )
    assert e.value.body["param"] == "previous_response_id", e.value.body
    assert "stateful mode is not supported" in e.value.body["message"], e.value.body


def test_store_false_is_accepted(client):
    r = client.responses.create(
        model="gpt-4o-mini", input=_unique("Hi"), store=False, max_output_tokens=32
    )
    assert r.output_text.strip()


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="gpt-9-ultra", input="Hi")
    assert e.value.body["code"] == "model_not_found"


# --- embeddings.create -------------------------------------------------------------------------


def _assert_unit_vectors(vectors, length):
    for v in vectors:
        assert len(v) == length
        assert all(math.isfinite(x) for x in v)
        norm = math.sqrt(sum(x * x for x in v))
        assert abs(norm - 1.0) < 1e-3, norm


INPUTS = ["The cat sat on the mat.", "Stock prices fell sharply.", "A kitten rested on a rug."]


def test_embeddings_several_inputs_base64_by_default(client):
    # The SDK asks for base64 unless told otherwise, and decodes it.
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=INPUTS)
    sent = json.loads(raw.http_request.content)
    assert sent["encoding_format"] == "base64", sent
    assert isinstance(json.loads(raw.text)["data"][0]["embedding"], str)
    r = raw.parse()
    assert r.object == "list"
    assert r.model == "text-embedding-3-small"
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(d.object == "embedding" for d in r.data)
    vectors = [d.embedding for d in r.data]
    _assert_unit_vectors(vectors, 1536)
    assert vectors[0] != vectors[1] and vectors[1] != vectors[2]
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens
    assert raw.headers["x-switchyard-model"] == "text-embedding-3-small"


def test_embeddings_float_matches_base64(client):
    as_float = client.embeddings.create(
        model="text-embedding-3-small", input=INPUTS[0], encoding_format="float"
    )
    as_base64 = client.embeddings.create(model="text-embedding-3-small", input=[INPUTS[0]])
    assert len(as_float.data) == 1
    a, b = as_float.data[0].embedding, as_base64.data[0].embedding
    _assert_unit_vectors([a], 1536)
    assert len(a) == len(b)
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-6


@pytest.mark.parametrize("dimensions", [256, 768])
def test_embeddings_dimensions(client, dimensions):
    r = client.embeddings.create(
        model="text-embedding-3-small", input=INPUTS[:2], dimensions=dimensions
    )
    _assert_unit_vectors([d.embedding for d in r.data], dimensions)


@pytest.mark.parametrize("model", sorted(EMBEDDING_DEFAULTS))
def test_embeddings_each_provider(client, model):
    r = client.embeddings.create(model=model, input=INPUTS)
    assert r.model == model
    assert len(r.data) == len(INPUTS)
    _assert_unit_vectors([d.embedding for d in r.data], EMBEDDING_DEFAULTS[model])


def test_embeddings_route(client):
    raw = client.embeddings.with_raw_response.create(model="embed", input=INPUTS, dimensions=768)
    served = raw.headers["x-switchyard-model"]
    assert served in EMBEDDING_DEFAULTS, served
    assert raw.headers["x-switchyard-route"] == "embed"
    r = raw.parse()
    assert r.model == served
    _assert_unit_vectors([d.embedding for d in r.data], 768)

    # Without `dimensions`, the route's length is its first model's default (1536), whichever
    # candidate serves: gemini-embedding-001 (3072 by default) shortens to it.
    raw = client.embeddings.with_raw_response.create(model="embed", input=INPUTS[0])
    assert raw.headers["x-switchyard-model"] in EMBEDDING_DEFAULTS
    _assert_unit_vectors([raw.parse().data[0].embedding], EMBEDDING_DEFAULTS["text-embedding-3-small"])


def test_embeddings_dimension_no_route_model_gives_is_refused(client):
    # Neither model of the route outputs 100-long vectors: `dimensions` is named, with the
    # reason of each model.
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="embed", input="hi", dimensions=100)
    assert e.value.body["param"] == "dimensions", e.value.body
    message = e.value.body["message"]
    assert "text-embedding-3-small" in message and "gemini-embedding-001" in message, message
    assert "not 100" in message, message


def test_embeddings_dimension_the_model_cannot_give_names_the_field(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="nomic-embed-text", input="hi", dimensions=256)
    assert e.value.body["param"] == "dimensions", e.value.body


def test_embeddings_of_a_chat_model_is_refused(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="gpt-4o-mini", input="hi")
    assert "gpt-4o-mini" in e.value.body["message"], e.value.body


def test_responses_with_an_embedding_model_is_refused(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="text-embedding-3-small", input="hi")
    assert "text-embedding-3-small" in e.value.body["message"], e.value.body


def test_embeddings_are_deterministic(client):
    a = client.embeddings.create(model="nomic-embed-text", input=INPUTS[2])
    b = client.embeddings.create(model="nomic-embed-text", input=INPUTS[2])
    assert a.data[0].embedding == b.data[0].embedding


@pytest.mark.parametrize(
    "param,kwargs",
    [
        ("input", {"input": []}),
        ("input", {"input": ""}),
        ("dimensions", {"input": "hi", "dimensions": 0}),
    ],
)
def test_embeddings_bad_request_names_the_field(client, param, kwargs):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="text-embedding-3-small", **kwargs)
    assert e.value.body["param"] == param, e.value.body


def test_embeddings_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-9", input="hi")
