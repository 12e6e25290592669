#!/usr/bin/env python3
"""RSS over a soak run (issue 17: "RSS after a 10-minute soak at 1,000 req/s: flat, within 5%").

Reads the RSS series lib.sh's run_attempt samples every 0.5 s during one load (KiB per line,
`$RUN_DIR/<config>-<load>.rss`) and prints the median RSS of each minute, then the verdict: the
last minute's median against the second minute's (the first holds the ramp-up of pools, caches
and allocator arenas).

    CONFIGS=everything LOADS_SPEC="soak|-z 600s -q 1000 -c 32 --latency-correction" \
      LOAD_TIMEOUT_S=700 BASELINE_END=0 bash examples/bench/gate.sh
    python3 examples/bench/gate/soak.py ~/.cache/gateway-bench/runs/gate-*/everything-soak_.rss
"""

import statistics
import sys

SAMPLES_PER_MINUTE = 120  # one every 0.5 s


def main(path: str) -> int:
    with open(path, encoding="ascii") as f:
        kib = [int(line) for line in f if line.strip().isdigit() and int(line) > 0]
    minutes = [kib[i : i + SAMPLES_PER_MINUTE] for i in range(0, len(kib), SAMPLES_PER_MINUTE)]
    minutes = [m for m in minutes if len(m) >= SAMPLES_PER_MINUTE // 2]
    if len(minutes) < 3:
        print(f"{path}: {len(kib)} samples: too short for a verdict (needs 3 minutes)")
        return 1
    print("| minute | median RSS MiB | max RSS MiB |")
    print("|---:|---:|---:|")
    for i, m in enumerate(minutes, 1):
        print(f"| {i} | {statistics.median(m) / 1024:.1f} | {max(m) / 1024:.1f} |")
    second, last = statistics.median(minutes[1]), statistics.median(minutes[-1])
    growth = 100.0 * (last - second) / second
    flat = abs(growth) <= 5.0
    print()
    print(
        f"last minute {last / 1024:.1f} MiB vs minute 2 {second / 1024:.1f} MiB: "
        f"{growth:+.1f}% ({'flat, within 5%' if flat else 'NOT flat'}); peak {max(kib) / 1024:.1f} MiB"
    )
    return 0 if flat else 2


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
