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
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

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


def _cut_offset(f: Any, end: int, last_step: int, chunk: int = 1 << 16) -> int:
    """Byte offset just after the last record with ``step <= last_step``, scanning back from ``end``.

    Records are appended in step order, so only the tail written after that record is read. A
    line cut short by a kill (unparsable) is dropped with the tail."""
    pos, buf = end, b""  # buf holds the bytes [pos, pos + len(buf))
    while True:
        start = max(0, pos - chunk)
        f.seek(start)
        buf = f.read(pos - start) + buf
        pos = start
        lines = buf.split(b"\n")
        # Unless at the start of the file, lines[0] may begin before `pos`: it waits for the next read.
        head, body = (lines[0], lines[1:]) if pos > 0 else (b"", lines)
        offset = pos + (len(head) + 1 if pos > 0 else 0)
        spans = []
        for line in body:
            spans.append((offset, line))
            offset += len(line) + 1
        for line_start, line in reversed(spans):
            if not line.strip():
                continue
            try:
                step = int(json.loads(line).get("step", 0))
            except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
                continue  # cut short by a kill: dropped
            if step <= last_step:
                return min(end, line_start + len(line) + 1)
        if pos == 0:
            return 0
        buf = head  # every line after it is dropped


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """Drop the records with ``step > last_step`` (a resume from the checkpoint at ``last_step``).

    The file is cut in place at the first such record, so resuming a long run reads and writes only
    the tail since its checkpoint, never the whole file (one line per step: hundreds of MB at 10^6
    steps). A truncation is one system call: a kill leaves either file, never a mix."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        cut = _cut_offset(f, end, last_step)
        if cut < end:
            f.truncate(cut)
        if cut > 0:
            f.seek(cut - 1)
            if f.read(1) != b"\n":  # the kept last record lacked its newline: the next append must not join it
                f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())


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
