#!/usr/bin/env python3
"""Time to first byte of a streamed answer, gateway against nginx direct, interleaved.

  ttfb.py N GW_URL GW_BODY DIRECT_URL DIRECT_BODY [HEADER...]   -> one JSON object on stdout

oha reports whole-request latency only, so this measures the added time to first token:
N requests to each target, alternating (gateway, direct, gateway, ...) over one keep-alive
connection per target, after 20 unmeasured ones each. TTFB = from sending the request to the
first byte of the answer's body (for the gateway's SSE answer: its first event). HEADER
("Name: value") go to the gateway only. Loopback only; N at most 10000; every request has a
10 s timeout. Output: {"gateway": {...}, "direct": {...}} with n, ok, p50/p90/p99/mean in ms.
"""
import http.client
import json
import sys
import time
import urllib.parse

TIMEOUT_S = 10
WARMUP = 20


def target(url, body_path, headers):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or u.hostname != "127.0.0.1" or not u.port:
        sys.exit(f"ttfb.py: only http://127.0.0.1:PORT/... URLs, not {url!r}")
    with open(body_path, "rb") as f:
        body = f.read(1 << 20)
    hdrs = {"content-type": "application/json", "accept": "text/event-stream"}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            sys.exit(f"ttfb.py: bad header {h!r}")
        hdrs[name.strip()] = value.strip()
    return {"host": u.hostname, "port": u.port, "path": u.path or "/", "body": body,
            "headers": hdrs, "conn": None, "times": [], "ok": 0, "errors": {}}


def once(t, measured):
    """One request; returns the TTFB in seconds, or None (counting the error when measured)."""
    if t["conn"] is None:
        t["conn"] = http.client.HTTPConnection(t["host"], t["port"], timeout=TIMEOUT_S)
    try:
        t0 = time.perf_counter()
        t["conn"].request("POST", t["path"], body=t["body"], headers=t["headers"])
        resp = t["conn"].getresponse()
        first = resp.read(1)
        t1 = time.perf_counter()
        rest = resp.read(1 << 22)
        text = first + rest
        if resp.status != 200 or b"data:" not in text or b"[DONE]" not in text:
            raise ValueError(f"HTTP {resp.status}: {text[:120]!r}")
        if resp.will_close:
            t["conn"].close()
            t["conn"] = None
        return t1 - t0
    except (OSError, ValueError, http.client.HTTPException) as e:
        if measured:
            key = str(e)[:100]
            t["errors"][key] = t["errors"].get(key, 0) + 1
        if t["conn"] is not None:
            t["conn"].close()
        t["conn"] = None
        return None


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    i = min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))
    return xs[i]


def summary(t):
    ms = [x * 1000 for x in t["times"]]
    out = {"n": len(ms) + sum(t["errors"].values()), "ok": len(ms), "errors": t["errors"]}
    for p in (50, 90, 99):
        v = pct(ms, p)
        out[f"p{p}_ms"] = None if v is None else round(v, 4)
    out["mean_ms"] = round(sum(ms) / len(ms), 4) if ms else None
    return out


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    n = int(sys.argv[1])
    if not 1 <= n <= 10000:
        sys.exit("ttfb.py: N must be 1..10000")
    gw = target(sys.argv[2], sys.argv[3], sys.argv[6:])
    direct = target(sys.argv[4], sys.argv[5], [])
    for i in range(WARMUP + n):
        for t in (gw, direct):
            x = once(t, i >= WARMUP)
            if x is not None and i >= WARMUP:
                t["times"].append(x)
    for t in (gw, direct):
        if t["conn"] is not None:
            t["conn"].close()
    print(json.dumps({"gateway": summary(gw), "direct": summary(direct)}))


if __name__ == "__main__":
    main()
