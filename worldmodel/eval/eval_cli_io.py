"""Checkpoint arguments and JSON results of the ``wm eval niso`` commands (shared by their handlers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def label_and_path(arg: str) -> tuple[str | None, str]:
    """``NAME=PATH`` -> ``(NAME, PATH)``; a plain (or existing) path -> ``(None, PATH)``."""
    if "=" in arg and not Path(arg).exists():
        name, _, path = arg.partition("=")
        return name, path
    return None, arg


def default_label(config: dict[str, Any]) -> str:
    """Row label of a NISO checkpoint from its saved configuration."""
    model = config.get("model", {})
    if model.get("mode") == "autoencoder":
        return "AE + aug"
    if float(model.get("beta", 0.1)) == 0.0:
        return "NISO without L_M"
    return "NISO"


def add_threads_option(p: Any) -> None:
    """``--threads N``: torch's CPU threads for an evaluation command (0: torch's default)."""
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (default 0: one per core). On a CPU shared with another job, 1 avoids "
        "oversubscription, which can slow an evaluation tens of times",
    )


def apply_threads(threads: int) -> None:
    """Set torch's CPU threads when ``threads > 0``; refuse a negative count."""
    if threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: torch's default), got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


def load_niso_arg(arg: str, device: str):
    """``(label, frozen model, config)`` of a ``[NAME=]CKPT`` argument."""
    from worldmodel.models.niso import load_niso

    name, path = label_and_path(arg)
    model, config = load_niso(path, device=device)
    return name or default_label(config), model, config


def write_result(out: str | None, result: dict[str, Any]) -> None:
    """Write ``result`` as JSON to ``out`` atomically (stdout when ``out`` is None)."""
    text = json.dumps(result, indent=2)
    if out:
        from worldmodel.atomic import atomic_write_text

        atomic_write_text(out, text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    else:
        print(text)
