"""The official Anthropic Python SDK, unchanged, against `switchyard demo` (`/v1/messages`): text,
a system prompt, tools with a tool_result round trip, streaming, the same through models of
other providers (the answer keeps Anthropic's shape, the headers name who served it),
`count_tokens`, `models.list`, and errors raised as the SDK's own exception types."""

import uuid

import anthropic
import pytest

from conftest import DEMO_MODELS

SYSTEM = "You are terse."
HELLO = [{"role": "user", "content": "Say hello."}]

WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CLOCK = {
    "name": "get_time",
    "description": "The current time in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "utc": {"type": "boolean"}},
        "required": ["city", "utc"],
    },
}

# A model of each provider kind, and the provider the gateway names for it.
OTHER_PROVIDERS = [
    ("gpt-4o-mini", "openai"),
    ("gemini-2.0-flash", "gemini"),
    ("llama3.2", "ollama"),
]
TOOL_MODELS = ["claude-3-5-haiku", "gpt-4o-mini", "gemini-2.0-flash"]


def _unique(text):
    """A prompt no other test sends, so no cached answer stands in for the upstream's."""
    return [{"role": "user", "content": f"{text} ({uuid.uuid4().hex})"}]


def _text(message):
    return "".join(b.text for b in message.content if b.type == "text")


def _assert_message(m, model, max_tokens):
    assert m.type == "message"
    assert m.role == "assistant"
    assert m.id.startswith("msg_"), m.id
    assert m.model == model
    assert m.stop_reason in ("end_turn", "max_tokens"), m.stop_reason
    assert _text(m).strip()
    assert m.usage.input_tokens > 0
    assert 0 < m.usage.output_tokens <= max_tokens


def _keyed_client(keyed_gateway, key, **kw):
    return anthropic.Anthropic(base_url=keyed_gateway["url"], max_retries=0, api_key=key, **kw)


# --- messages.create ---------------------------------------------------------------------------


# The SDK warns that claude-sonnet-4-5 is past its deprecation date; the demo still serves it.
@pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
@pytest.mark.parametrize("model", ["claude-3-5-haiku", "claude-sonnet-4-5"])
def test_create_text_with_a_system_prompt(anthropic_client, model):
    m = anthropic_client.messages.create(
        model=model, max_tokens=64, system=SYSTEM, messages=HELLO
    )
    _assert_message(m, model, 64)
    assert m.stop_reason == "end_turn"
    assert m.usage.cache_read_input_tokens == 0


def test_create_with_system_blocks_and_multi_turn(anthropic_client):
    m = anthropic_client.messages.create(
        model="claude-3-5-haiku",
        max_tokens=64,
        system=[{"type": "text", "text": SYSTEM}, {"type": "text", "text": "Answer in English."}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Blue."}]},
            {"role": "user", "content": "Another one."},
        ],
        stop_sequences=["\n\n\n"],
        metadata={"user_id": "sdk-test-user"},
    )
    _assert_message(m, "claude-3-5-haiku", 64)


def test_max_tokens_cuts_the_answer(anthropic_client):
    m = anthropic_client.messages.create(
        model="claude-3-5-haiku", max_tokens=3, messages=_unique("Tell me a long story.")
    )
    assert m.stop_reason == "max_tokens"
    assert 0 < m.usage.output_tokens <= 3


@pytest.mark.parametrize("model", TOOL_MODELS)
def test_forced_tool_then_tool_result_round_trip(anthropic_client, model):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = anthropic_client.messages.create(
        model=model,
        max_tokens=256,
        messages=messages,
        tools=[CLOCK, WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert first.stop_reason == "tool_use", first
    calls = [b for b in first.content if b.type == "tool_use"]
    assert len(calls) == 1, first.content
    call = calls[0]
    assert call.name == "get_weather"
    assert call.id
    assert isinstance(call.input, dict) and isinstance(call.input.get("city"), str), call.input

    # The documented agent loop: the assistant turn goes back as the SDK returned it.
    follow_up = anthropic_client.messages.create(
        model=model,
        max_tokens=64,
        messages=[
            *messages,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "18C, cloudy"}
                ],
            },
        ],
        tools=[CLOCK, WEATHER],
    )
    assert follow_up.stop_reason in ("end_turn", "max_tokens"), follow_up
    assert _text(follow_up).strip()
    assert not [b for b in follow_up.content if b.type == "tool_use"]


def test_tool_choice_any_and_none(anthropic_client):
    messages = _unique("What time is it in Oslo?")
    forced = anthropic_client.messages.create(
        model="claude-3-5-haiku",
        max_tokens=256,
        messages=messages,
        tools=[CLOCK],
        tool_choice={"type": "any"},
    )
    call = next(b for b in forced.content if b.type == "tool_use")
    assert call.name == "get_time"
    assert isinstance(call.input["city"], str) and isinstance(call.input["utc"], bool)

    refused = anthropic_client.messages.create(
        model="claude-3-5-haiku",
        max_tokens=64,
        messages=messages,
        tools=[CLOCK],
        tool_choice={"type": "none"},
    )
    assert refused.stop_reason in ("end_turn", "max_tokens")
    assert not [b for b in refused.content if b.type == "tool_use"]


# --- messages.stream ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["claude-3-5-haiku", "gpt-4o-mini"])
def test_stream_text(anthropic_client, model):
    with anthropic_client.messages.stream(
        model=model, max_tokens=64, system=SYSTEM, messages=_unique("Say hello.")
    ) as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["x-switchyard-model"] == model
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip()
    assert _text(final) == text
    # The message names the model as the complete answer and the header do.
    assert final.model == model, final.model
    assert final.id.startswith("msg_"), final.id
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0
    assert 0 < final.usage.output_tokens <= 64


def test_stream_event_order(anthropic_client):
    stream = anthropic_client.messages.create(
        model="claude-3-5-haiku", max_tokens=32, messages=_unique("Say hi."), stream=True
    )
    kinds = [event.type for event in stream]
    assert kinds[0] == "message_start", kinds
    assert kinds[-2:] == ["message_delta", "message_stop"], kinds
    assert "content_block_start" in kinds and "content_block_stop" in kinds, kinds
    first, last = kinds.index("content_block_start"), kinds.index("content_block_stop")
    assert first < kinds.index("content_block_delta") < last, kinds
    assert set(kinds) <= {
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }, kinds


@pytest.mark.parametrize("model", ["claude-3-5-haiku", "gemini-2.0-flash"])
def test_stream_forced_tool_use(anthropic_client, model):
    with anthropic_client.messages.stream(
        model=model,
        max_tokens=256,
        messages=_unique("Weather in Lima?"),
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.id
    assert isinstance(call.input.get("city"), str), call.input


# --- other providers behind /v1/messages -------------------------------------------------------


@pytest.mark.parametrize("model,provider", OTHER_PROVIDERS)
def test_other_provider_answers_in_anthropic_shape(anthropic_client, model, provider):
    raw = anthropic_client.messages.with_raw_response.create(
        model=model, max_tokens=64, system=SYSTEM, messages=_unique("Say hello.")
    )
    assert raw.headers["x-switchyard-model"] == model
    assert raw.headers["x-switchyard-provider"] == provider
    m = raw.parse()
    _assert_message(m, model, 64)
    # The body is Anthropic's, not the upstream's.
    body = raw.json()
    assert "choices" not in body and "candidates" not in body, body


def test_other_provider_stream_names_the_model(anthropic_client):
    with anthropic_client.messages.stream(
        model="gemini-2.0-flash", max_tokens=64, messages=_unique("Say hello.")
    ) as stream:
        assert stream.response.headers["x-switchyard-model"] == "gemini-2.0-flash"
        assert stream.response.headers["x-switchyard-provider"] == "gemini"
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.model == "gemini-2.0-flash"


@pytest.mark.parametrize("route", ["auto", "cheap"])
def test_a_route_answers_and_names_the_model_that_served(anthropic_client, route):
    raw = anthropic_client.messages.with_raw_response.create(
        model=route, max_tokens=64, messages=_unique("Say hello.")
    )
    served = raw.headers["x-switchyard-model"]
    assert served in DEMO_MODELS, served
    assert raw.headers["x-switchyard-route"] == route
    m = raw.parse()
    _assert_message(m, served, 64)


# --- count_tokens ------------------------------------------------------------------------------


def test_count_tokens(anthropic_client):
    short = anthropic_client.messages.count_tokens(
        model="claude-3-5-haiku", system=SYSTEM, messages=HELLO
    )
    assert short.input_tokens > 0
    longer = anthropic_client.messages.count_tokens(
        model="claude-3-5-haiku",
        system=SYSTEM,
        messages=[{"role": "user", "content": "Say hello. " * 50}],
    )
    assert longer.input_tokens > short.input_tokens + 50
    with_tools = anthropic_client.messages.count_tokens(
        model="claude-3-5-haiku", system=SYSTEM, messages=HELLO, tools=[WEATHER]
    )
    assert with_tools.input_tokens > short.input_tokens


def test_count_tokens_states_the_tokenizer_and_margin(anthropic_client):
    raw = anthropic_client.messages.with_raw_response.count_tokens(
        model="gpt-4o-mini", messages=HELLO
    )
    body = raw.json()
    assert body["input_tokens"] == raw.parse().input_tokens > 0
    assert body["model"] == "gpt-4o-mini"
    assert isinstance(body["tokenizer"], str) and body["tokenizer"]
    assert isinstance(body["exact"], bool)
    assert isinstance(body["margin"], (int, float)) and body["margin"] >= 0


def test_count_tokens_of_a_route_counts_for_its_first_model(anthropic_client):
    raw = anthropic_client.messages.with_raw_response.count_tokens(model="cheap", messages=HELLO)
    assert raw.json()["model"] == "gpt-4o-mini"


def test_count_tokens_unknown_model_is_not_found(anthropic_client):
    with pytest.raises(anthropic.NotFoundError) as e:
        anthropic_client.messages.count_tokens(model="claude-9-opus", messages=HELLO)
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"


# --- models ------------------------------------------------------------------------------------


def test_models_list_in_anthropic_shape(anthropic_client):
    models = list(anthropic_client.models.list())
    ids = {m.id for m in models}
    assert set(DEMO_MODELS) <= ids, ids
    for m in models:
        assert m.type == "model"
        assert m.display_name
        assert m.created_at.year >= 2024


def test_models_retrieve(anthropic_client):
    m = anthropic_client.models.retrieve("claude-3-5-haiku")
    assert m.id == "claude-3-5-haiku" and m.type == "model"
    with pytest.raises(anthropic.NotFoundError) as e:
        anthropic_client.models.retrieve("claude-9-opus")
    assert e.value.body["error"]["type"] == "not_found_error"


# --- errors as the SDK's typed exceptions ------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_not_found(anthropic_client, stream):
    with pytest.raises(anthropic.NotFoundError) as e:
        anthropic_client.messages.create(
            model="claude-9-opus", max_tokens=16, messages=HELLO, stream=stream
        )
    assert e.value.status_code == 404
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    assert "claude-9-opus" in e.value.body["error"]["message"]


@pytest.mark.parametrize(
    "field,kwargs",
    [
        ("max_tokens", {"max_tokens": 0}),
        # This SDK no longer types `temperature`; older clients and agents still send it.
        ("temperature", {"max_tokens": 16, "extra_body": {"temperature": 1.5}}),
        ("messages", {"max_tokens": 16, "messages": []}),
    ],
)
def test_bad_field_is_a_bad_request_naming_it(anthropic_client, field, kwargs):
    args = {"model": "claude-3-5-haiku", "messages": HELLO, **kwargs}
    with pytest.raises(anthropic.BadRequestError) as e:
        anthropic_client.messages.create(**args)
    assert e.value.status_code == 400
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert field in e.value.body["error"]["message"], e.value.body


def test_an_embedding_model_is_a_bad_request(anthropic_client):
    with pytest.raises(anthropic.BadRequestError) as e:
        anthropic_client.messages.create(
            model="text-embedding-3-small", max_tokens=16, messages=HELLO
        )
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "text-embedding-3-small" in e.value.body["error"]["message"], e.value.body


def test_missing_max_tokens_is_a_bad_request(anthropic_client):
    # The SDK requires max_tokens; a hand-rolled client can still leave it out.
    with pytest.raises(anthropic.BadRequestError) as e:
        anthropic_client.post(
            "/v1/messages",
            body={"model": "claude-3-5-haiku", "messages": HELLO},
            cast_to=object,
        )
    assert "max_tokens" in e.value.body["error"]["message"], e.value.body


def test_keys_mode_accepts_x_api_key_and_bearer(keyed_gateway):
    key = keyed_gateway["admin"].create_key("anthropic-sdk-ok")["key"]
    by_x_api_key = _keyed_client(keyed_gateway, key)
    m = by_x_api_key.messages.create(model="claude-3-5-haiku", max_tokens=32, messages=HELLO)
    assert _text(m).strip()
    by_bearer = anthropic.Anthropic(
        base_url=keyed_gateway["url"], max_retries=0, api_key=None, auth_token=key
    )
    m = by_bearer.messages.create(model="gpt-4o-mini", max_tokens=32, messages=HELLO)
    assert _text(m).strip()
    assert by_bearer.messages.count_tokens(model="gpt-4o-mini", messages=HELLO).input_tokens > 0


def test_unknown_key_is_an_authentication_error(keyed_gateway):
    client = _keyed_client(keyed_gateway, "sk-switchyard-not-a-key-at-all")
    with pytest.raises(anthropic.AuthenticationError) as e:
        client.messages.create(model="claude-3-5-haiku", max_tokens=16, messages=HELLO)
    assert e.value.status_code == 401
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.count_tokens(model="claude-3-5-haiku", messages=HELLO)
    with pytest.raises(anthropic.AuthenticationError):
        list(client.models.list())


def test_revoked_key_is_an_authentication_error(keyed_gateway):
    admin = keyed_gateway["admin"]
    made = admin.create_key("anthropic-sdk-revoked")
    client = _keyed_client(keyed_gateway, made["key"])
    assert client.messages.create(model="claude-3-5-haiku", max_tokens=16, messages=HELLO)
    admin.revoke(made["id"])
    with pytest.raises(anthropic.AuthenticationError) as e:
        client.messages.create(model="claude-3-5-haiku", max_tokens=16, messages=HELLO)
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        with client.messages.stream(model="claude-3-5-haiku", max_tokens=16, messages=HELLO) as s:
            s.get_final_message()


def test_model_outside_the_keys_allow_list_is_permission_denied(keyed_gateway):
    made = keyed_gateway["admin"].create_key("anthropic-sdk-haiku-only", models=["claude-3-5-haiku"])
    client = _keyed_client(keyed_gateway, made["key"])
    assert client.messages.create(model="claude-3-5-haiku", max_tokens=16, messages=HELLO)
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        client.messages.create(model="gpt-4o", max_tokens=16, messages=HELLO)
    assert e.value.status_code == 403
    assert e.value.body["error"]["type"] == "permission_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.count_tokens(model="gpt-4o", messages=HELLO)


def test_rpm_limit_is_a_rate_limit_error_with_retry_after(keyed_gateway):
    made = keyed_gateway["admin"].create_key("anthropic-sdk-rpm", rpm=1)
    client = _keyed_client(keyed_gateway, made["key"])
    assert client.messages.create(model="claude-3-5-haiku", max_tokens=16, messages=_unique("One."))
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(model="claude-3-5-haiku", max_tokens=16, messages=_unique("Two."))
    assert e.value.status_code == 429
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "rate_limit_error"
    retry_after = e.value.response.headers.get("retry-after")
    assert retry_after is not None, dict(e.value.response.headers)
    assert 0 < int(retry_after) <= 60, retry_after
    # A stream is refused the same way, before any event.
    with pytest.raises(anthropic.RateLimitError):
        with client.messages.stream(
            model="claude-3-5-haiku", max_tokens=16, messages=_unique("Three.")
        ) as s:
            s.get_final_message()


# --- the response cache ------------------------------------------------------------------------


def test_deterministic_message_is_answered_from_the_cache(anthropic_client):
    # This SDK does not type `temperature`; 0 is what makes the request deterministic.
    kwargs = dict(
        model="claude-3-5-haiku",
        max_tokens=16,
        messages=_unique("Cache me."),
        extra_body={"temperature": 0},
    )
    first = anthropic_client.messages.with_raw_response.create(**kwargs)
    second = anthropic_client.messages.with_raw_response.create(**kwargs)
    assert first.headers["x-switchyard-cache"] == "miss"
    assert second.headers["x-switchyard-cache"] == "hit"
    a, b = first.parse(), second.parse()
    assert _text(b) == _text(a) and _text(a).strip()
    assert b.usage.output_tokens == a.usage.output_tokens


def test_deterministic_stream_is_replayed_as_a_valid_event_stream(anthropic_client):
    kwargs = dict(
        model="claude-3-5-haiku",
        max_tokens=16,
        messages=_unique("Stream and cache me."),
        extra_body={"temperature": 0},
    )
    finals, texts = [], []
    for expected in ("miss", "hit"):
        with anthropic_client.messages.stream(**kwargs) as stream:
            assert stream.response.headers["x-switchyard-cache"] == expected
            texts.append("".join(stream.text_stream))
            finals.append(stream.get_final_message())
    assert texts[0].strip() and texts[1] == texts[0]
    assert finals[1].stop_reason == finals[0].stop_reason
    assert finals[1].usage.output_tokens == finals[0].usage.output_tokens > 0
