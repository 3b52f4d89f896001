"""Scene-generator speed: scenes/s per family (median of several runs) at the GQN defaults.

python scripts/bench_scenes.py [--scenes 100] [--repeats 3] [--views 10] [--size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import envs  # noqa: F401
from envs.scenes import generate_scene

CASES = [("rooms", {}), ("rooms", {"camera": "free"}), ("shepard-metzler", {})]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scenes", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--views", type=int, default=10)
    p.add_argument("--size", type=int, default=64)
    a = p.parse_args()
    print("| source | options | scenes/s (median) | ms/scene |")
    print("|---|---|---|---|")
    for src, opts in CASES:
        generate_scene(src, 0, 0, views=a.views, size=a.size, **opts)  # compiles the template, opens GL
        rates = []
        for r in range(a.repeats):
            t = time.perf_counter()
            for i in range(a.scenes):
                generate_scene(src, r, i, views=a.views, size=a.size, **opts)
            rates.append(a.scenes / (time.perf_counter() - t))
        med = statistics.median(rates)
        print(f"| {src} | {opts or '-'} | {med:.1f} | {1e3 / med:.1f} |")


if __name__ == "__main__":
    main()
