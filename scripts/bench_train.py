#!/usr/bin/env python
"""Benchmark training speed of a learner's presets (same as ``wm train bench``).

Examples::

    python scripts/bench_train.py --preset small --image-size 32 --threads 1
    python scripts/bench_train.py --preset small paper --steps 10 --repeats 5 --json bench.json
    python scripts/bench_train.py --preset paper --device cuda --compile      # on a GPU

Each preset runs in a fresh subprocess through the real training engine on in-memory random
batches; steps/s is the median over ``--repeats`` consecutive runs of the timed steps.
"""

from __future__ import annotations

import argparse
import sys

from worldmodel.train.bench import add_bench_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_train.py")
    sub = parser.add_subparsers(dest="command")
    add_bench_parser(sub)
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
