#!/usr/bin/env python3
"""Markdown tables for gate.sh: one per configuration, against nginx measured in the same run.

  table.py RUN_DIR HEADER_MD OUT_MD CONFIG...

RUN_DIR/rows.tsv: the shared harness's rows (../shared/bench/report.py `row`: name, load, req/s, p50,
p90, p99, errors, note, peak RSS MiB, CPU ms/req, requests, other CPU %, calib ms); the
baseline is the row set named `nginx` (and `nginx-end`, nginx again after the gateway runs,
to show drift); p50 and p99 are re-read from each run's oha JSON in RUN_DIR with µs precision
(the rows round to 10 µs). RUN_DIR/facts.tsv: `key<TAB>value` lines gate.sh wrote (TTFB
figures, log-row and cache checks). HEADER_MD is copied to the top of OUT_MD.
"""
import json
import os
import re
import sys

COLS = ["name", "load", "rps", "p50", "p90", "p99", "errors", "note", "rss", "cpu", "n", "other", "calib"]
BASE, BASE_END = "nginx", "nginx-end"
NOISY_PCT = 10  # as report.py: other CPU above this marks a row as disturbed


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def f(x, nd=2, sign=False):
    if x is None:
        return "-"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def load_rows(run_dir):
    rows = []
    with open(os.path.join(run_dir, "rows.tsv")) as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == len(COLS):
                rows.append(dict(zip(COLS, parts)))
    for r in rows:
        # lib.sh names the JSON `echo "$name-$label" | tr -c 'A-Za-z0-9._-' '_'` (newline included)
        slug = re.sub(r"[^A-Za-z0-9._-]", "_", f"{r['name']}-{r['load']}\n")
        try:
            with open(os.path.join(run_dir, slug + ".json")) as fh:
                pct = json.load(fh).get("latencyPercentiles", {})
            for key in ("p50", "p99"):
                if isinstance(pct.get(key), (int, float)):
                    r[key] = f"{pct[key] * 1000:.3f}"
        except (OSError, ValueError):
            pass
    return rows


def load_facts(path):
    facts = {}
    try:
        with open(path) as fh:
            for line in fh:
                k, sep, v = line.rstrip("\n").partition("\t")
                if sep:
                    facts[k] = v
    except OSError:
        pass
    return facts


def by_load(rows, name):
    return {r["load"]: r for r in rows if r["name"] == name}


def mark(r):
    o = num(r["other"])
    return "*" if o is not None and o > NOISY_PCT else ""


def baseline_table(rows, loads):
    start, end = by_load(rows, BASE), by_load(rows, BASE_END)
    out = ["## nginx direct (baseline)\n",
           "| load | req/s | p50 ms | p99 ms | errors | nginx CPU ms/req | other CPU % | calib ms | end of run: req/s, p50, p99 |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for load in loads:
        r = start.get(load)
        if r is None:
            continue
        e = end.get(load)
        drift = f"{e['rps']}, {e['p50']}, {e['p99']}" if e else "-"
        out.append(f"| {load}{mark(r)} | {r['rps']} | {r['p50']} | {r['p99']} | {r['errors']} | {r['cpu']} | "
                   f"{r['other']} | {r['calib']} | {drift} |")
    return out


def config_table(rows, name, loads):
    mine, base = by_load(rows, name), by_load(rows, BASE)
    if not mine:
        return [f"## {name}\n", "No rows (not run, or it failed to start: see the notes)."]
    # The peak over the configuration's loads (the stream run is another kind of request).
    peak = max((num(r["rps"]) or 0.0 for k, r in mine.items() if not k.startswith("stream")), default=0.0)
    out = [f"## {name}\n",
           "| load | req/s | p50 ms | p99 ms | Δp50 ms | p50 ÷ nginx | Δp99 ms | p99 ÷ nginx | CPU ms/req | "
           "peak RSS MiB | errors | req/s ÷ peak | other CPU % | calib ms |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for load in loads:
        r = mine.get(load)
        if r is None:
            continue
        b = base.get(load, {})
        cells = []
        for key in ("p50", "p99"):
            a, c = num(r[key]), num(b.get(key))
            cells.append(f(a - c, 3, sign=True) if a is not None and c is not None else "-")
            cells.append(f"{a / c:.2f}×" if a is not None and c else "-")
        ratio = "-"
        if load == "c256" and peak > 0 and num(r["rps"]) is not None:
            ratio = f"{num(r['rps']) / peak:.2f}"
        out.append(f"| {load}{mark(r)} | {r['rps']} | {r['p50']} | {r['p99']} | {cells[0]} | {cells[1]} | "
                   f"{cells[2]} | {cells[3]} | {r['cpu']} | {r['rss']} | {r['errors']} | {ratio} | "
                   f"{r['other']} | {r['calib']} |")
        if r["note"]:
            notes.append(f"- {load}: {r['note']}")
    if notes:
        out += ["", "Notes from the runs:", ""] + notes
    return out


def targets(rows, facts, configs):
    def cell(name, load, key):
        return num(by_load(rows, name).get(load, {}).get(key))

    def per_config(fn, nd):
        vals = [(c, fn(c)) for c in configs]
        return ", ".join(f"{c} {f(v, nd)}" for c, v in vals if v is not None) or "-"

    def delta(name, load, key):
        a, b = cell(name, load, key), cell(BASE, load, key)
        return None if a is None or b is None else a - b

    def c256_ratio(name):
        mine = by_load(rows, name)
        peak = max((num(r["rps"]) or 0.0 for k, r in mine.items() if not k.startswith("stream")), default=0.0)
        v = cell(name, "c256", "rps")
        return None if v is None or peak <= 0 else v / peak

    ttft = num(facts.get("ttfb.delta_p50_ms"))
    sent, stored, dropped = (facts.get(f"everything.{k}") for k in ("sent", "rows", "dropped"))
    log_rows = "-" if sent is None else f"{dropped} dropped (metrics); {stored} rows for {sent} requests sent"
    out = ["## Targets (issue 17; this machine, nginx mock, same run)\n",
           "| figure | target | measured |", "|---|---|---|",
           f"| CPU per request at c32, bare | ≤ 0.10 ms | {f(cell('bare', 'c32', 'cpu'), 3)} |",
           f"| CPU per request at c32, everything on | ≤ 0.15 ms | {f(cell('everything', 'c32', 'cpu'), 3)} |",
           f"| req/s at c32, bare | ≥ 10k | {f(cell('bare', 'c32', 'rps'), 0)} |",
           f"| Δp99 at q2000, everything on | ≤ 1 ms | {f(delta('everything', 'q2000', 'p99'), 3, sign=True)} |",
           f"| cache hit, everything on, p50 at c1 | ≤ 0.2 ms | {f(cell('cache-hit', 'c1', 'p50'), 3)} |",
           f"| streaming: added TTFT (p50) at c1, bare | ≤ 0.3 ms | {f(ttft, 3, sign=True)} |",
           f"| RSS, peak under c128 (MiB) | ≤ 64 | {per_config(lambda c: cell(c, 'c128', 'rss'), 0)} |",
           f"| request-log rows dropped, everything on | 0 | {log_rows} |",
           f"| req/s at c256 ÷ peak | ≥ 0.9 | {per_config(c256_ratio, 2)} |"]
    return out


def ttfb_section(facts):
    if "ttfb.gateway_p50_ms" not in facts:
        return []
    g = {k: num(facts.get(f"ttfb.gateway_{k}_ms")) for k in ("p50", "p90", "p99")}
    d = {k: num(facts.get(f"ttfb.direct_{k}_ms")) for k in ("p50", "p90", "p99")}
    rows = ["## Streaming: time to first byte at c1 (bare)\n",
            f"{facts.get('ttfb.n', '?')} streamed requests to each, alternating gateway and nginx direct, one "
            "keep-alive connection each (`gate/ttfb.py`): from sending the request to the first byte of the "
            f"answer's body. Errors: gateway {facts.get('ttfb.gateway_errors', '?')}, "
            f"nginx {facts.get('ttfb.direct_errors', '?')}.\n",
            "| path | p50 ms | p90 ms | p99 ms |", "|---|---:|---:|---:|",
            f"| nginx direct | {f(d['p50'], 3)} | {f(d['p90'], 3)} | {f(d['p99'], 3)} |",
            f"| gateway (bare) | {f(g['p50'], 3)} | {f(g['p90'], 3)} | {f(g['p99'], 3)} |"]
    diffs = [None if g[k] is None or d[k] is None else g[k] - d[k] for k in ("p50", "p90", "p99")]
    ratios = [None if g[k] is None or not d[k] else g[k] / d[k] for k in ("p50", "p90", "p99")]
    rows.append("| Δ (added) | " + " | ".join(f(x, 3, sign=True) for x in diffs) + " |")
    rows.append("| ÷ nginx | " + " | ".join("-" if x is None else f"{x:.2f}×" for x in ratios) + " |")
    return rows


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    run_dir, header_path, out_path, *configs = sys.argv[1:]
    rows, facts = load_rows(run_dir), load_facts(os.path.join(run_dir, "facts.tsv"))
    loads = []
    for r in rows:
        if r["load"] not in loads:
            loads.append(r["load"])
    out = []
    try:
        with open(header_path) as fh:
            out.append(fh.read().rstrip() + "\n")
    except OSError:
        pass
    out += targets(rows, facts, configs) + [""]
    out += baseline_table(rows, loads) + [""]
    for c in configs:
        out += config_table(rows, c, loads) + [""]
    out += ttfb_section(facts)
    with open(out_path, "w") as fh:
        fh.write("\n".join(out).rstrip() + "\n")


if __name__ == "__main__":
    main()
