"""When every candidate of a route is rate limited upstream, the official OpenAI SDK gets a
`RateLimitError` with a `retry-after` to wait, never an `InternalServerError` (issue 16, item 6).

The demo runs with an override (`demo --config`): a route `limited` over two models whose
simulated upstreams answer every call with 429 and `retry-after: 5` and `3` (longer than the
gateway's own backoff cap, so it never waits them out itself)."""

import openai
import pytest

from conftest import _run_demo

OVERRIDE = """
[models."limited-a"]
provider = "openai"
catalog = "gpt-4o-mini"
upstream = "limited-a"

[models."limited-b"]
provider = "anthropic"
catalog = "claude-3-5-haiku"
upstream = "limited-b"

[routes.limited]
models = ["limited-a", "limited-b"]
optimize = "cost"

[sim.models."limited-a"]
error_rate = 1.0
error_fault = "429:5"

[sim.models."limited-b"]
error_rate = 1.0
error_fault = "429:3"
"""


@pytest.fixture(scope="module")
def limited_client(tmp_path_factory):
    folder = tmp_path_factory.mktemp("override")
    path = folder / "limited.toml"
    path.write_text(OVERRIDE)
    # No routing policies: this is about the answer when no model can be tried.
    no_policies = {"SWITCHYARD_POLICIES": str(tmp_path_factory.mktemp("no-policies"))}
    for state in _run_demo(tmp_path_factory, no_policies, ("--config", str(path))):
        yield openai.OpenAI(base_url=f"{state['url']}/v1", api_key="unused", max_retries=0)


def _call(client):
    return client.chat.completions.create(
        model="limited", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )


def test_every_candidate_rate_limited_is_a_rate_limit_error_with_retry_after(limited_client):
    # The first call reaches both upstreams (each answers 429); every later one finds both
    # cooling down and is refused at once, the same way, with the soonest of their waits.
    waits = []
    for _ in range(20):
        with pytest.raises(openai.RateLimitError) as caught:
            _call(limited_client)
        response = caught.value.response
        assert response.status_code == 429
        assert caught.value.code == "rate_limit_exceeded", caught.value.body
        waits.append(int(response.headers["retry-after"]))
    # Never longer than the shorter upstream wait (3 s), never less than a second.
    assert all(1 <= w <= 3 for w in waits), waits
    assert waits[0] == 3, waits
