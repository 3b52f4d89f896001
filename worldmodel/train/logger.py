"""Run logging: TensorBoard scalars and image grids, plus a JSONL record of every step.

``metrics.jsonl`` holds one JSON object per line: ``{"kind": "train", "step": s, ...}`` after
every optimiser step (``step`` counts completed steps, 1-based) and ``{"kind": "eval", ...}``
after each held-out evaluation. On resume from a checkpoint at step s, lines after s (written
before a kill) are dropped, as are TensorBoard events (``purge_step``), so both logs read as
one uninterrupted run. Only rank 0 writes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from worldmodel.atomic import atomic_write_text

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"


def tile_images(images: torch.Tensor, pad: int = 1) -> torch.Tensor:
    """One image ``[3, H', W']`` from ``[N,3,H,W]`` (a row) or ``[R,C,3,H,W]`` (a grid), values clamped to [0,1].

    Hand-written because torchvision (``make_grid``) is not a dependency of the toolkit.
    """
    x = images.detach().float().cpu().clamp(0, 1)
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5 or x.shape[2] not in (1, 3):
        raise ValueError(f"images must be [N,C,H,W] or [R,Cols,C,H,W] with C in (1, 3), got {tuple(images.shape)}")
    r, c, ch, h, w = x.shape
    canvas = torch.ones(ch, r * (h + pad) + pad, c * (w + pad) + pad)
    for i in range(r):
        for j in range(c):
            y0, x0 = pad + i * (h + pad), pad + j * (w + pad)
            canvas[:, y0 : y0 + h, x0 : x0 + w] = x[i, j]
    return canvas


def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Records of ``metrics.jsonl`` (of one ``kind`` if given); an unparsable last line is skipped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if kind is None or rec.get("kind") == kind:
            out.append(rec)
    return out


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Keep only records with ``step <= last_step`` (atomic rewrite)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    kept = [json.dumps(r) for r in read_metrics(run_dir) if int(r.get("step", 0)) <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().float().item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep it readable
    return value


class RunLogger:
    """TensorBoard writer + JSONL metrics for one run (no-op on ranks other than 0).

    Args:
        run_dir: the run directory.
        enabled: False on non-zero ranks.
        resume_step: when resuming, the checkpoint's step (later records are dropped).
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        self._fh = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            truncate_metrics(self.run_dir, resume_step)
        purge = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(self.run_dir / TB_DIR), purge_step=purge)
        self._fh = open(self.run_dir / METRICS_FILE, "a", buffering=1)

    def record(self, kind: str, step: int, metrics: Mapping[str, Any]) -> None:
        """Append one JSONL record."""
        if self._fh is None:
            return
        rec = {"kind": kind, "step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        self._fh.write(json.dumps(rec) + "\n")

    def scalars(self, step: int, metrics: Mapping[str, Any], prefix: str) -> None:
        """Write scalars to TensorBoard as ``prefix/name``."""
        if self.writer is None:
            return
        for k, v in metrics.items():
            v = _plain(v)
            if isinstance(v, (int, float)):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def images(self, step: int, images: Mapping[str, torch.Tensor], prefix: str = "images") -> None:
        """Write image grids (see :func:`tile_images`)."""
        if self.writer is None:
            return
        for name, img in images.items():
            self.writer.add_image(f"{prefix}/{name}", tile_images(img), step, dataformats="CHW")

    def flush(self) -> None:
        """Flush TensorBoard and the JSONL file."""
        if self.writer is not None:
            self.writer.flush()
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        """Flush and close."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None
