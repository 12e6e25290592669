"""The local cluster (`deploy/local/cluster.sh`) end to end: two real gateway replicas behind
HAProxy, with the simulator, two Redis servers and a real Postgres, all on free loopback ports in
a temporary state folder. Requests through HAProxy through the official OpenAI SDK all succeed
and both replicas serve some; a second `start` changes nothing; `stop` leaves no process.

The replicas run `deploy/local/switchyard.toml` (Postgres store, `[redis]` counters and L2
cache) unless SWITCHYARD_CLUSTER_CONFIG names another config."""

import os
import pathlib
import socket
import subprocess
import time
import urllib.request
import uuid

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, _binary

CLUSTER_SH = ROOT / "deploy" / "local" / "cluster.sh"
POSTGRES_URL = os.environ.get("SWITCHYARD_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="SWITCHYARD_TEST_POSTGRES_URL is not set (export it from `bash .ci/postgres.sh`)",
)

# What would change what the replicas do (an admin key turns on auth mode `keys`).
_SCRUBBED_ENV = (
    "SWITCHYARD_ADMIN_KEY",
    "SWITCHYARD_STORE_URL",
    "SWITCHYARD_REDIS_URL",
    "SWITCHYARD_REDIS_CACHE_URL",
    "SWITCHYARD_SIM_URL",
    "SWITCHYARD_SIM_KEY",
    "SWITCHYARD_POLICIES",
    "SWITCHYARD_CLUSTER_REPLICA_PORT",
    "RUST_LOG",
)


def _free_ports(n):
    """n distinct ports free right now (all held open together while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _listening(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _starttime(pid):
    """The process's start time (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return fields[19]


def _recorded(state):
    """name → (pid, starttime) of every process cluster.sh recorded."""
    out = {}
    for f in sorted((state / "run").glob("*.proc")):
        pid, start = f.read_text().split()
        out[f.stem] = (int(pid), start)
    return out


def _log_tails(state):
    text = []
    for f in sorted((state / "logs").glob("*.log")):
        lines = f.read_text(errors="replace").splitlines()[-15:]
        text.append(f"--- {f.name}\n" + "\n".join(lines))
    return "\n".join(text)


class Cluster:
    def __init__(self, state, env, ports):
        self.state = state
        self.env = env
        self.ports = ports

    def run(self, *args, timeout=240):
        return subprocess.run(
            ["bash", str(CLUSTER_SH), *args],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def explain(self, r):
        logs = _log_tails(self.state)
        return f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}\n{logs}"


@pytest.fixture
def cluster(tmp_path):
    state = tmp_path / "cluster"
    lb, sim, redis, cache, r1, r2 = _free_ports(6)
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update(
        {
            "SWITCHYARD_BIN": _binary(),
            "SWITCHYARD_CLUSTER_DIR": str(state),
            "SWITCHYARD_CLUSTER_POSTGRES_URL": POSTGRES_URL,
            "SWITCHYARD_CLUSTER_LB_PORT": str(lb),
            "SWITCHYARD_CLUSTER_SIM_PORT": str(sim),
            "SWITCHYARD_CLUSTER_REDIS_PORT": str(redis),
            "SWITCHYARD_CLUSTER_REDIS_CACHE_PORT": str(cache),
            "SWITCHYARD_CLUSTER_REPLICA_PORTS": f"{r1} {r2}",
        }
    )
    ports = {"lb": lb, "sim": sim, "redis": redis, "cache": cache, "replicas": [r1, r2]}
    c = Cluster(state, env, ports)
    yield c
    # Whatever the test did, nothing it started outlives it.
    c.run("stop", timeout=120)


def _served(port):
    """Chat completions answered 200 by the replica on `port`, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    # The parser files the counter under `switchyard_requests`; match on the sample's name.
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if (
                s.name == "switchyard_requests_total"
                and s.labels.get("endpoint") == "/v1/chat/completions"
                and s.labels.get("status") == "200"
            ):
                total += s.value
    return total


def test_two_replicas_behind_haproxy_share_the_load_and_stop_cleanly(cluster):
    r = cluster.run("start", "2")
    assert r.returncode == 0, cluster.explain(r)
    lb = cluster.ports["lb"]
    assert f"http://127.0.0.1:{lb}" in r.stdout, r.stdout
    before = _recorded(cluster.state)
    assert {"haproxy", "sim", "redis-counters", "redis-cache", "replica-1", "replica-2"} <= set(
        before
    ), before

    status = cluster.run("status")
    assert status.returncode == 0, cluster.explain(status)
    assert status.stdout.count("ready") >= 6, status.stdout

    # Starting again is safe: every process is kept, nothing is started twice.
    again = cluster.run("start", "2")
    assert again.returncode == 0, cluster.explain(again)
    assert "already running" in again.stderr, again.stderr
    assert _recorded(cluster.state) == before

    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{lb}/v1", api_key="unused-in-open-mode", max_retries=0
    )
    answers = []
    for i in range(20):
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Cluster request {i} {uuid.uuid4().hex}"}],
            max_tokens=16,
        )
        answers.append(reply)
    assert all(a.choices and a.choices[0].message.content for a in answers), answers
    assert all(a.model for a in answers)

    served = [_served(port) for port in cluster.ports["replicas"]]
    assert sum(served) == 20, served
    assert all(n >= 1 for n in served), f"HAProxy did not spread the requests: {served}"

    stop = cluster.run("stop", timeout=120)
    assert stop.returncode == 0, cluster.explain(stop)
    deadline = time.monotonic() + 10
    alive = {}
    while time.monotonic() < deadline:
        alive = {n: p for n, (p, t) in before.items() if _starttime(p) == t}
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"still running after stop: {alive}"
    ports = [lb, cluster.ports["sim"], cluster.ports["redis"], cluster.ports["cache"]]
    ports += cluster.ports["replicas"]
    assert not [p for p in ports if _listening(p)], "a port is still served after stop"
    assert not list((cluster.state / "run").glob("*.proc"))

    status = cluster.run("status")
    assert status.returncode != 0 and "stopped" in status.stdout, status.stdout
