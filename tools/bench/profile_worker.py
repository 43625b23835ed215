"""Where the worker's time goes: one throughput run under cProfile, summed by package.

    python -m tools.bench.profile_worker [--purchases N]

Runs the same batches as ``make bench``'s worker throughput (10-event batches, 20 % duplicates,
the embedded Postgres, the Make.com receiver on loopback) with the profiler on, then prints the
own time of each package (which code is busy) and the functions with the largest cumulative time
(which calls the worker waits in). Profiling slows Python code, not the database, so the shares
lean towards the database a little less than they would unprofiled.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from collections import Counter
from pathlib import Path

from tools.bench.__main__ import local_stack, worker_throughput


def _package(filename: str) -> str:
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    if "payments" in parts:
        return "payments." + path.stem
    if "functions" in parts:
        return "functions"
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C: socket, hashing, json)"
    return "stdlib " + path.stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--purchases", type=int, default=200)
    args = parser.parse_args()
    with local_stack() as (env, _handles):
        worker_throughput(env, 20, 1)  # warm: imports, connections, catalog
        profile = cProfile.Profile()
        profile.enable()
        result = worker_throughput(env, args.purchases, 1)
        profile.disable()
    stats = pstats.Stats(profile)
    own: Counter[str] = Counter()
    total = 0.0
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        own[_package(filename)] += tottime
        total += tottime
    rate = result["events_per_s"]["median"]
    print(f"\nworker under the profiler: {rate:.0f} events/s, {total:.2f} s profiled\n")
    print("own time by package")
    for package, seconds in own.most_common(15):
        print(f"  {package:<44} {seconds:6.2f} s  {100 * seconds / total:5.1f} %")
    print("\nlargest cumulative time")
    stats.sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
