"""`GET /ai/stream`, the live feed, with the `websockets` client against the real demo binary:

- snapshots arrive once a second with the schema's fields (README, "Live feed");
- a fault injected on one model's simulated upstream (500 on every call) shows as a `breaker`
  event (to `open`) and as an alert (`breaker_open`);
- a client that never reads is disconnected (the gateway does not buffer for it), and the
  gateway's memory (VmRSS) grows by less than half of the bytes of events pushed past it
  (buffering them would grow it by at least all of them).

A demo of its own: the fault would disturb the shared one."""

import asyncio
import base64
import concurrent.futures
import json
import os
import socket
import time
import urllib.error
import urllib.request

import pytest

from conftest import _run_demo

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402

FAULTY = "gpt-4o-mini"
SNAPSHOT_FIELDS = ["ts_ms", "uptime_s", "totals", "models", "keys", "cache"]
TOTALS_FIELDS = ["requests_per_s", "errors_per_s", "cost_per_min_usd", "in_flight", "alerts_active"]
MODEL_FIELDS = [
    "model", "provider", "requests_per_s", "success_rate", "latency_p50_ms", "latency_p99_ms",
    "ttft_p50_ms", "ttft_p99_ms", "tokens_per_s", "cost_per_min_usd", "breaker", "forced",
    "drained", "share", "in_flight",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    yield from _run_demo(tmp_path_factory)


def _ws_url(demo):
    return demo["url"].replace("http://", "ws://") + "/ai/stream"


def _sim_url(log):
    """The demo's in-process simulator, from its `simulator started` log line."""
    for line in log:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        fields = event.get("fields", event)
        if "simulator started" in (event.get("message"), fields.get("message")):
            return f"http://{fields.get('sim') or event.get('sim')}"
    raise AssertionError("the demo did not log its simulator's address")


def _call(url, body=None, method=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method or ("POST" if data else "GET"),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _chat(demo, model, text="hello"):
    body = {"model": model, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": text}]}
    return _call(f"{demo['url']}/v1/chat/completions", body)[0]


async def _next(ws, within, wanted):
    """The next JSON frame for which `wanted` holds."""
    async def read():
        while True:
            frame = json.loads(await ws.recv())
            if wanted(frame):
                return frame
    return await asyncio.wait_for(read(), within)


def test_snapshots_arrive_every_second_with_the_schema_fields(demo):
    async def run():
        async with connect(_ws_url(demo)) as ws:
            first = await _next(ws, 3, lambda f: f["type"] == "snapshot")
            second = await _next(ws, 3, lambda f: f["type"] == "snapshot")
            return first, second

    first, second = asyncio.run(run())
    for field in SNAPSHOT_FIELDS:
        assert field in first, field
    for field in TOTALS_FIELDS:
        assert field in first["totals"], field
    assert {"hits", "misses", "hit_rate"} <= set(first["cache"])
    assert first["models"], first
    for m in first["models"]:
        for field in MODEL_FIELDS:
            assert field in m, (field, m)
        assert m["breaker"] in ("closed", "open", "half_open")
    gap = second["ts_ms"] - first["ts_ms"]
    assert 500 <= gap <= 2000, gap


def test_a_fault_shows_as_a_breaker_event_then_an_alert(demo):
    sim = _sim_url(demo["log"])
    status, body = _call(f"{demo['url']}/ai/alerts")
    assert status == 200, (status, body)

    async def run():
        async with connect(_ws_url(demo)) as ws:
            await ws.send(json.dumps({"subscribe": ["breakers", "alerts"]}))
            status, _ = _call(f"{sim}/_sim/faults", {"model": FAULTY, "fault": "500", "rate": 1.0})
            assert status < 300, status
            loop = asyncio.get_running_loop()
            pool = concurrent.futures.ThreadPoolExecutor(4)
            stop = False

            def traffic():
                while not stop:
                    _chat(demo, FAULTY, f"fault {time.monotonic()}")

            jobs = [loop.run_in_executor(pool, traffic) for _ in range(4)]
            try:
                # The breaker watcher and the alert engine tick on their own: either may be first.
                seen = {}

                def wanted(f):
                    if f["type"] == "breaker" and f["model"] == FAULTY and f["to"] == "open":
                        seen.setdefault("breaker", f)
                    if f["type"] == "alert" and f["kind"] == "breaker_open" and f["subject"] == FAULTY:
                        seen.setdefault("alert", f)
                    return "breaker" in seen and "alert" in seen

                await _next(ws, 40, wanted)
                return seen["breaker"], seen["alert"]
            finally:
                stop = True
                _call(f"{sim}/_sim/faults", method="DELETE")
                await asyncio.gather(*jobs)
                pool.shutdown()

    opened, alert = asyncio.run(run())
    assert opened["cause"] == "observed" and opened["from"] in ("closed", "half_open"), opened
    assert alert["state"] == "firing" and alert["id"] == f"breaker_open:{FAULTY}", alert


def _listening_pid(port):
    """The process listening on 127.0.0.1:`port` (from /proc: its socket's inode)."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local, state = parts[1], parts[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                inode = parts[9]
    assert inode, f"nothing listens on {port}"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process holds socket {inode}")


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _raw_feed(host, port):
    """A WebSocket handshake by hand on a socket with a tiny receive buffer, which then reads
    nothing: what a stuck browser tab looks like to the gateway."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /ai/stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


# Each request below is one decision event on the feed; a 128-character x-request-id (the most
# the gateway takes) makes each about 475 bytes.
PUSHED_EVENTS = 40_000
QUESTION = "the same question every time"


def _burst(demo, count, tag):
    """`count` chat requests (cache hits after the first: fast) with long request ids; their
    statuses."""
    def one(i):
        rid = f"{tag}-{i:08d}-".ljust(128, "x")
        body = {"model": "gpt-4o", "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": QUESTION}]}
        req = urllib.request.Request(
            f"{demo['url']}/v1/chat/completions", data=json.dumps(body).encode(),
            headers={"content-type": "application/json", "x-request-id": rid},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


def _decision_frame_bytes(demo):
    """The size of one decision frame as the feed sends it, for a request like the burst's."""
    async def run():
        async with connect(_ws_url(demo)) as ws:
            await ws.send(json.dumps({"subscribe": ["decisions"]}))
            # Topics apply from the next frame on; the decision comes after the request.
            await asyncio.sleep(0.2)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, _burst, demo, 1, "size")
            while True:
                raw = await asyncio.wait_for(ws.recv(), 5)
                if json.loads(raw)["type"] == "decision":
                    return len(raw)
    return asyncio.run(run())


def test_a_client_that_never_reads_is_disconnected_and_memory_stays_flat(demo):
    host, port = demo["url"].removeprefix("http://").rsplit(":", 1)
    port = int(port)
    pid = _listening_pid(port)
    frame = _decision_frame_bytes(demo)
    assert 300 <= frame <= 2000, frame
    # Warm up with the same burst and no stuck client (allocator, caches, the request log's
    # batches, the cached answer): what the requests themselves cost is then in the baseline.
    _burst(demo, PUSHED_EVENTS // 4, "warm")
    before = _rss_kib(pid)
    stuck = _raw_feed(host, port)
    # 40,000 decision events (~18 MiB) pushed past a client that reads nothing: far more than
    # the sockets between them hold (about 3 MB on loopback, measured) and than the 256 events
    # it may fall behind. Buffering them for it would grow the gateway by all of that.
    statuses = _burst(demo, PUSHED_EVENTS, "push")
    # The demo's simulated upstreams fail a few calls on purpose; each request is an event anyway.
    assert statuses.count(200) > 0.9 * len(statuses), set(statuses)
    after = _rss_kib(pid)
    # Now read: what was in the sockets, then the end. A client still being served would get
    # snapshots forever instead.
    stuck.settimeout(30)
    deadline = time.monotonic() + 30
    received = 0
    while True:
        assert time.monotonic() < deadline, "the slow client was never disconnected"
        chunk = stuck.recv(65536)
        if not chunk:
            break
        received += len(chunk)
    stuck.close()
    pushed_mib = PUSHED_EVENTS * frame / 2**20
    growth_mib = (after - before) / 1024
    print(f"RSS {before} -> {after} KiB (+{growth_mib:.1f} MiB) while {pushed_mib:.1f} MiB of "
          f"events were pushed; the stuck client had {received} bytes in its sockets")
    assert received < pushed_mib * 2**20 / 4, f"the stuck client received {received} bytes"
    assert growth_mib < pushed_mib / 2, (
        f"RSS grew by {growth_mib:.1f} MiB while {pushed_mib:.1f} MiB of events were pushed "
        f"(from {before} KiB)"
    )
