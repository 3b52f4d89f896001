"""The ``wm`` command line: one entry point whose subcommands live beside the code they drive.

Each command module exposes ``add_commands(subparsers)`` and keeps heavy imports (torch, SB3)
inside its handlers, so ``wm envs list`` starts without loading torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that contribute subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "envs.cli",
    "worldmodel.data.cli",
    "worldmodel.train.cli",
    "worldmodel.eval_cli",
    "worldmodel.diagnostics.cli",
    "worldmodel.align.cli",
    "agents.commands",
    "agents.transfer_cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``wm`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="wm",
        description="World-model toolkit: moving-camera envs, multi-view datasets, GQN/NISO learners, SB3 agents.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``wm``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"wm: error: {err}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
