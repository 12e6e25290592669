"""The official OpenAI Python SDK, unchanged, against `switchyard demo`: every demo model answers,
streaming and not, and bad requests come back as the SDK's own exception types."""

import openai
import pytest

from conftest import DEMO_MODELS

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello."},
]


@pytest.mark.parametrize("model", DEMO_MODELS)
def test_non_streaming(client, model):
    r = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=16, temperature=0)
    assert r.model == model
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content.strip()
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0
    assert 0 < r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.parametrize("model", DEMO_MODELS)
def test_streaming(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert text.strip()
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens > 0


def test_tool_call_round_trip(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    for model in ["gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash", "llama3.2"]:
        r = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=tools,
        )
        call = r.choices[0].message.tool_calls[0]
        assert r.choices[0].finish_reason == "tool_calls", model
        assert call.function.name == "get_weather"
        follow_up = client.chat.completions.create(
            model=model,
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": "18C, cloudy"},
            ],
            tools=tools,
        )
        assert follow_up.choices[0].message.content.strip(), model


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-9-ultra", messages=MESSAGES)
    assert e.value.body["code"] == "model_not_found"


def test_invalid_field_is_a_bad_request_naming_it(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=7)
    assert e.value.body["param"] == "temperature"


def test_models_list(client):
    ids = {m.id for m in client.models.list()}
    assert set(DEMO_MODELS) <= ids
