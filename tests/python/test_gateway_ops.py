"""The operations surface through real clients: `/metrics` parsed by the official Prometheus
client, `x-request-id` and the response cache seen through the official OpenAI SDK (complete and
streamed answers), and the OpenAPI document checked by a validator."""

import json
import math
import urllib.request
import uuid

import openai
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from conftest import DEMO_MODELS

STAGES = {"admit", "count", "route", "policy", "cache", "record"}


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers, r.read().decode()


def _messages(text):
    return [{"role": "user", "content": text}]


def _unique(prefix):
    """A prompt no other test sends, so the cache starts cold for it."""
    return f"{prefix} {uuid.uuid4().hex}"


def _scrape(gateway_url):
    status, headers, text = _get(f"{gateway_url}/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers["content-type"]
    # The parser is a generator: consuming it all is what checks the whole exposition.
    families = list(text_string_to_metric_families(text))
    by_name = {}
    for f in families:
        assert f.name not in by_name, f"family {f.name} twice"
        by_name[f.name] = f
    return text, by_name


def _family(families, name):
    """A family by its exposition name (the parser drops a counter's `_total`)."""
    for candidate in (name, name.removesuffix("_total")):
        if candidate in families:
            return families[candidate]
    raise AssertionError(f"no family {name}; have {sorted(families)}")


def _samples(family, suffix=""):
    return [s for s in family.samples if s.name == family.name + suffix]


def test_metrics_scrape_cleanly(gateway_url, client):
    # Answered requests (the second from the cache), so every stage has been observed.
    messages = _messages(_unique("Metrics"))
    for _ in range(2):
        r = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, max_tokens=8, temperature=0
        )
        assert r.choices[0].message.content
    text, families = _scrape(gateway_url)

    requests = _family(families, "switchyard_requests_total")
    assert requests.type == "counter"
    answered = [
        s
        for s in requests.samples
        if s.name == "switchyard_requests_total"
        and s.labels.get("endpoint") == "/v1/chat/completions"
        and s.labels.get("status") == "200"
        and s.labels.get("model") == "gpt-4o-mini"
    ]
    assert answered and sum(s.value for s in answered) >= 1, requests.samples
    assert {"endpoint", "route", "model", "status", "cache"} <= set(answered[0].labels)

    overhead = _family(families, "switchyard_overhead_seconds")
    assert overhead.type == "histogram"
    counts = {s.labels["stage"]: s.value for s in _samples(overhead, "_count")}
    assert STAGES <= set(counts), counts
    assert all(counts[stage] >= 1 for stage in STAGES), counts

    hits = _family(families, "switchyard_cache_hits_total")
    assert hits.type == "counter"
    assert len(hits.samples) == 1 and hits.samples[0].value >= 1, hits.samples

    breakers = _family(families, "switchyard_breaker_state")
    assert breakers.type == "gauge"
    state = {s.labels["model"]: s.value for s in breakers.samples}
    assert set(DEMO_MODELS) <= set(state), state
    assert all(v in (0, 1, 2) for v in state.values()), state

    rows = _family(families, "switchyard_log_rows_total")
    assert rows.type == "counter"
    fates = {s.labels["result"]: s.value for s in rows.samples if s.name.endswith("_total")}
    assert set(fates) == {"written", "dropped", "failed"}, fates
    assert fates["dropped"] == 0 and fates["failed"] == 0, fates

    # Every name in the exposition is declared once, with a TYPE.
    typed = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(typed) == len(set(typed)), typed


def test_histogram_buckets_are_cumulative_and_end_with_inf(gateway_url, client):
    client.chat.completions.create(
        model="gemini-2.0-flash", messages=_messages(_unique("Buckets")), max_tokens=8
    )
    _, families = _scrape(gateway_url)
    histograms = [f for f in families.values() if f.type == "histogram"]
    names = {f.name for f in histograms}
    assert {"switchyard_overhead_seconds", "switchyard_request_duration_seconds"} <= names, names
    checked = 0
    for f in histograms:
        series = {}
        for s in f.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            entry = series.setdefault(labels, {"buckets": [], "count": None, "sum": None})
            if s.name == f.name + "_bucket":
                entry["buckets"].append((float(s.labels["le"]), s.value))
            elif s.name == f.name + "_count":
                entry["count"] = s.value
            elif s.name == f.name + "_sum":
                entry["sum"] = s.value
        for labels, e in series.items():
            where = f"{f.name}{dict(labels)}"
            bounds = [b for b, _ in e["buckets"]]
            assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), where
            assert bounds and math.isinf(bounds[-1]), f"{where}: no +Inf bucket"
            values = [v for _, v in e["buckets"]]
            assert all(a <= b for a, b in zip(values, values[1:])), f"{where}: {values}"
            assert e["count"] is not None and values[-1] == e["count"], f"{where}: {e}"
            assert e["sum"] is not None and e["sum"] >= 0, f"{where}: {e}"
            checked += 1
    assert checked >= len(STAGES)


def test_request_id_is_echoed_through_the_sdk(client):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=_messages("Echo my id."),
        max_tokens=8,
        extra_headers={"x-request-id": "py-123"},
    )
    assert raw.headers["x-request-id"] == "py-123"
    assert raw.request_id == "py-123"  # the SDK reads the same header
    assert raw.headers["x-switchyard-model"] == "gpt-4o-mini"
    assert raw.parse().choices[0].message.content

    # Errors carry it too.
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(
            model="no-such-model",
            messages=_messages("hi"),
            extra_headers={"x-request-id": "py-404"},
        )
    assert e.value.response.headers["x-request-id"] == "py-404"


def test_request_id_is_generated_when_absent(client):
    ids = set()
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=_messages("No id."), max_tokens=8
        )
        rid = raw.headers["x-request-id"]
        assert rid.startswith("req_") and rid.isascii() and len(rid) <= 128, rid
        ids.add(rid)
    assert len(ids) == 2, ids


def test_deterministic_request_is_answered_from_the_cache(client):
    messages = _messages(_unique("Cache me"))
    first = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, max_tokens=16, temperature=0
    )
    second = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, max_tokens=16, temperature=0
    )
    assert first.headers["x-switchyard-cache"] == "miss"
    assert second.headers["x-switchyard-cache"] == "hit"
    a, b = first.parse(), second.parse()
    assert a.choices[0].message.content
    assert b.choices[0].message.content == a.choices[0].message.content
    assert b.usage.completion_tokens == a.usage.completion_tokens
    # A sampled request takes no part in the cache.
    sampled = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, max_tokens=16, temperature=0.7
    )
    assert sampled.headers["x-switchyard-cache"] == "bypass"


def _collect(stream):
    text, usage, finish = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    return text, usage, finish


def test_deterministic_stream_is_replayed_from_the_cache(client):
    kwargs = dict(
        model="claude-3-5-haiku",
        messages=_messages(_unique("Stream and cache me")),
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    first = client.chat.completions.with_raw_response.create(**kwargs)
    assert first.headers["x-switchyard-cache"] == "miss"
    text1, usage1, finish1 = _collect(first.parse())
    second = client.chat.completions.with_raw_response.create(**kwargs)
    assert second.headers["x-switchyard-cache"] == "hit"
    text2, usage2, finish2 = _collect(second.parse())
    assert text1.strip()
    assert text2 == text1
    assert finish2 == finish1 and finish1 in ("stop", "length")
    assert usage1 is not None and usage2 is not None
    assert usage2.completion_tokens == usage1.completion_tokens > 0
    assert usage2.prompt_tokens == usage1.prompt_tokens > 0


def test_openapi_document_lists_the_api_and_validates(gateway_url):
    status, headers, text = _get(f"{gateway_url}/openapi.json")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    spec = json.loads(text)
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    assert "post" in paths["/v1/chat/completions"], sorted(paths)
    for path in ("/metrics", "/ai/performance", "/admin/keys", "/admin/keys/{id}/spend"):
        assert path in paths, sorted(paths)
    validate(spec)
