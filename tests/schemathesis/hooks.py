"""Schemathesis hooks for .ci/schemathesis.sh: the rules the OpenAPI document states in words
because JSON Schema cannot state them.

A schema-valid request the gateway refuses is a mismatch (ST202), except when the refusal comes
from one of the rules below: a rule between two fields of one request (a named tool must be one
of the request's tools), one that needs the gateway's configuration (a key's routes must be
configured; no configured model may be able to serve a request), or the analyst endpoints'
numeric checks (bars in time order, a positive definite covariance). Each rule is named by the
operation and the `param` the gateway blames; every other refusal still fails the run, and so
does every accepted invalid request, server error and answer outside the document.
"""

import json
import os
import re
import time
import urllib.error
import urllib.request

import schemathesis

# (operation, param regex, message regex or None): the rule, as the document states it.
RULES = [
    # Cross-field rules.
    (r"POST /v1/chat/completions|POST /ai/route", r"tool_choice\.function\.name", None, "names one of `tools`"),
    (r"POST /v1/messages(/count_tokens)?|POST /v1/responses", r"tool_choice\.name", None, "names one of `tools`"),
    (r"POST /v1/messages(/count_tokens)?", r"thinking\.budget_tokens", None, "less than `max_tokens`"),
    (r"POST /ai/optimize/portfolio",
     r"covariance(\[\d+\])?|assets\[\d+\]\.(symbol|prices)|target_return|constraints(\..*)?|objective",
     None, "covariance n×n and positive definite, unique symbols, equal price series, feasible bounds"),
    (r"POST /ai/analyze/market", r"(symbols|csv|params).*", None, "bars in time order, OHLC, aligned series"),
    (r"GET /ai/spend", r"from|to|period", None,
     "a real instant (1970 to 9999), from <= to, at most 366 days (31 with period=hour)"),
    # Rules that need the configuration.
    (r"GET /ai/spend", r"tag", None, "tag goes with group_by=tag, and names one of [log] tags"),
    (r"POST /v1/messages(/count_tokens)?", r".*", r".*only Anthropic models take.*", "Anthropic models only"),
    (r"POST /admin/keys", r"(routes|models)\[\d+\]", None, "names a configured route or model"),
    (r"POST /v1/embeddings", r"dimensions", r".*outputs vectors of .*", "a length the named models can output"),
    (r"POST /ai/route", r"models\[\d+\]", None, "names a configured model"),
    (r"POST /v1/(embeddings|chat/completions|messages|responses)|POST /ai/route", r"model",
     r".*is an? (chat|embedding) model.*", "a chat door takes chat models; embeddings take embedding models"),
    (r"POST /v1/(chat/completions|messages|responses)|POST /ai/route", r"messages",
     r".*does not support .*", "the model must have the capability the request needs (images, tools, JSON)"),
    (r"POST /v1/(chat/completions|messages|responses)|POST /ai/route", r"max_tokens|max_output_tokens",
     r".*exceeds model .* maximum output.*", "at most the model's output cap"),
]
# What serde says of a value of the wrong type or shape: always the document's business, so never
# excused by a rule above.
PARSE_ERROR = re.compile(r".*(invalid type|invalid value|invalid length|missing field|unknown field|unknown variant).*", re.DOTALL)
# Refusals that depend on the configured models, whatever the request.
CONFIG_CODES = {
    "no_eligible_model": "no configured model can serve it (output cap, context window, capability)",
    "context_length_exceeded": "longer than every configured model's context window",
    "upstream_rejected_request": "the chosen model's provider does not take it (its own rules, not this document's)",
}


def _blamed(response):
    """(code, param, message) of an error answer, in OpenAI's shape or Anthropic's."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return None, None, ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None, ""
    message = str(error.get("message", ""))
    param = error.get("param")
    if param is None:
        # Anthropic's shape names the parameter in the message: "Invalid 'messages[0].content': …".
        found = re.match(r"Invalid '([^']+)'", message)
        param = found.group(1) if found else None
    return error.get("code"), param, message


def _excused(operation, why, message):
    """Note an excused refusal (ST_EXCUSED: a file to list them in)."""
    path = os.environ.get("ST_EXCUSED")
    if path:
        with open(path, "a") as f:
            f.write(f"{operation}\t{why}\t{message[:200]}\n")
    return False


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    if getattr(failure, "code", None) != "ST202" and type(failure).__name__ != "RejectedPositiveData":
        return True
    if response.status_code != 400:
        return True
    code, param, message = _blamed(response)
    if PARSE_ERROR.fullmatch(message):
        return True
    operation = f"{case.method.upper()} {case.path}"
    if code in CONFIG_CODES:
        return _excused(operation, code, message)
    # The same, in Anthropic's shape (no `code`).
    if code is None and re.fullmatch(r"Model '[^']*' rejected the request: .*", message, re.DOTALL):
        return _excused(operation, "upstream_rejected_request", message)
    if code is None and re.fullmatch(r"No model of route '[^']*' can serve this request: .*", message, re.DOTALL):
        return _excused(operation, "no_eligible_model", message)
    for op, pattern, text, _ in RULES:
        if (
            re.fullmatch(op, operation)
            and param is not None
            and re.fullmatch(pattern, param)
            and (text is None or re.fullmatch(text, message, re.DOTALL))
        ):
            return _excused(operation, pattern, message)
    return True


# Operator controls a generated call may turn on: a drained model, a breaker forced open. Left on,
# every later call routed to that model would get a 503 (what the document promises for it, but
# a server error to schemathesis), so each is undone right after the call that made it.
CONTROL = re.compile(r"/admin/models/([^/]+)/(drain|breaker)")


@schemathesis.hook
def after_call(ctx, case, response):
    found = CONTROL.fullmatch(case.formatted_path) if hasattr(case, "formatted_path") else None
    if case.method.upper() != "POST" or found is None or response.status_code >= 300:
        return
    base, admin = os.environ.get("ST_BASE_URL"), os.environ.get("ST_ADMIN_KEY")
    if not base or not admin:
        return
    model, control = found.groups()
    if control == "drain":
        req = urllib.request.Request(f"{base}/admin/models/{model}/drain", method="DELETE")
    else:
        req = urllib.request.Request(
            f"{base}/admin/models/{model}/breaker", method="POST", data=b'{"force": null}'
        )
        req.add_header("content-type", "application/json")
    req.add_header("authorization", f"Bearer {admin}")
    # Generated calls with a wrong admin key use up this address's failed-attempt allowance
    # (10 a minute), and the gateway then answers 429 to the right key as well, with the time
    # a new attempt is allowed in `retry-after`. Wait that long and try again: left undone, the
    # control would turn every later call to that model into a 503.
    for _ in range(20):
        try:
            urllib.request.urlopen(req, timeout=10).read()
            return
        except urllib.error.HTTPError as e:
            if e.code != 429:
                raise
            time.sleep(min(float(e.headers.get("retry-after") or 1), 10.0) + 0.1)
    raise RuntimeError(f"could not undo {control} on {model}: still 429 after 20 tries")
