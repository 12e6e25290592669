"""Hedging bench driver (run by examples/bench/hedge.sh): N requests per route over C keep-alive
connections to /ai/route; per route the latency quantiles, the upstream calls the simulator saw,
the hedges and their extra cost. Standard library only."""

import http.client
import json
import os
import sys
import threading
import time

GW = os.environ.get("GW", "127.0.0.1:18291")
SIM = os.environ.get("SIM", "127.0.0.1:18290")
N = int(os.environ.get("N", "3000"))
C = int(os.environ.get("C", "8"))


def sim_requests():
    conn = http.client.HTTPConnection(SIM)
    conn.request("GET", "/_sim/stats")
    stats = json.loads(conn.getresponse().read())
    return sum(m["requests"] for m in stats["models"].values())


def run(route):
    body = json.dumps({"route": route, "prompt": "Name three rivers.", "max_tokens": 12})
    lock = threading.Lock()
    latencies, hedges, refused = [], [], 0
    cost = [0.0]
    left = [N]

    def worker():
        nonlocal refused
        conn = http.client.HTTPConnection(GW)
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            t0 = time.perf_counter()
            conn.request("POST", "/ai/route", body, {"content-type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            took = (time.perf_counter() - t0) * 1000
            if resp.status != 200:
                sys.exit(f"{route}: HTTP {resp.status}: {data[:300]!r}")
            v = json.loads(data)
            hedge = v["routing"].get("hedge")
            with lock:
                latencies.append(took)
                cost[0] += v["cost_usd"]
                if hedge and hedge["outcome"] in ("hedge_won", "primary_won", "both_failed"):
                    hedges.append(hedge["extra_cost_usd"])
                elif hedge and hedge["outcome"] == "no_budget":
                    refused += 1

    before = sim_requests()
    threads = [threading.Thread(target=worker) for _ in range(C)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = sim_requests() - before
    latencies.sort()

    def q(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    extra = sum(hedges)
    print(
        f"| {route} | {N} | {q(0.5):.0f} ms | {q(0.99):.0f} ms | {q(0.999):.0f} ms | "
        f"{calls - N} ({(calls - N) / N:.1%}) | {refused} | "
        f"${extra:.6f} ({extra / cost[0]:.1%} of ${cost[0]:.6f}) |"
    )


print(f"| route | requests | p50 | p99 | p99.9 | extra upstream calls | not hedged (budget) | extra cost |")
print("|---|---|---|---|---|---|---|---|")
for route in sys.argv[1:]:
    run(route)
