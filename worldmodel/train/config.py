"""Training configuration shared by every learner, and helpers for config dataclasses.

Torch-free: the ``wm`` parser is built from these dataclasses without importing torch.
Each field carries a docstring (the string literal under it); :func:`field_docs` reads them
so that ``wm train <learner> --help`` shows the same text as the source.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

C = TypeVar("C")

DEVICES_HELP = "'auto' (CUDA if available), 'cpu', 'cuda' or 'cuda:N'"
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
LR_SCHEDULES: tuple[str, ...] = ("linear", "cosine", "constant")
SWITCHES: tuple[str, ...] = ("auto", "on", "off")


@dataclass
class TrainConfig:
    """How to train a learner: data, optimisation, devices, logging and checkpoints."""

    data: str = ""
    """Training dataset directory (written by ``wm data collect``)."""
    val_data: str | None = None
    """Held-out dataset directory; when unset the last ``val_fraction`` of ``data``'s scenes are held out."""
    val_fraction: float = 0.05
    """Fraction of the training dataset's scenes (the last ones) held out for evaluation if ``val_data`` is unset (0
    disables evaluation)."""
    out: str = "runs/train"
    """Run directory: run.json, metrics.jsonl, TensorBoard events (tb/) and checkpoints/."""
    steps: int = 2000
    """Number of optimiser steps to train for (in total, counting steps before a resume)."""
    batch_size: int = 16
    """Global batch size: scenes per optimiser step summed over all processes (must divide by the world size)."""
    lr: float = 1e-3
    """Initial learning rate (Adam)."""
    lr_final: float = 1e-4
    """Learning rate reached at ``lr_anneal_steps`` (and kept after); unused by the constant schedule."""
    lr_anneal_steps: int = 2000
    """Steps over which the learning rate goes from ``lr`` to ``lr_final``."""
    lr_schedule: Literal["linear", "cosine", "constant"] = "linear"
    """Shape of the learning-rate annealing: 'linear' (GQN paper), 'cosine' or 'constant'."""
    warmup_steps: int = 0
    """Linear warm-up from 0 to ``lr`` over this many steps before the annealing schedule."""
    adam_beta1: float = 0.9
    """Adam's first-moment decay."""
    adam_beta2: float = 0.999
    """Adam's second-moment decay."""
    adam_eps: float = 1e-8
    """Adam's epsilon."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW); 0 gives plain Adam."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value (0 disables clipping; the norm is logged either way)."""
    seed: int = 0
    """Base seed: model initialisation, data order and every random draw derive from it."""
    device: str = "auto"
    """Where to train: 'auto' (CUDA if available), 'cpu', 'cuda' or 'cuda:N' (under torchrun the local rank's GPU)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Compute precision: 'auto' (bf16 autocast on CUDA, fp32 on CPU), 'fp32' or 'bf16'."""
    channels_last: Literal["auto", "on", "off"] = "auto"
    """Channels-last memory format for convolutions: 'auto' (on for CUDA), 'on' or 'off'."""
    compile: bool = False
    """Compile the loss with ``torch.compile`` (first steps are slow while it compiles)."""
    num_workers: int = 0
    """DataLoader worker processes per training process."""
    threads: int = 0
    """CPU threads of torch in each process (0: torch's default, one per core). On a shared or busy CPU, 1 is often much
    faster."""
    log_every: int = 10
    """Write scalars to TensorBoard every this many steps (metrics.jsonl gets every step)."""
    image_every: int = 250
    """Write image grids (the learner's ``visualise``) to TensorBoard every this many steps (0 disables)."""
    eval_every: int = 100
    """Evaluate on the held-out split every this many steps, before the first step and after the last (0 disables
    evaluation unless val_data is given)."""
    eval_batches: int = 4
    """Number of held-out batches per evaluation (the same batches every time)."""
    ckpt_every: int = 250
    """Write a checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    progress: bool = True
    """Show a progress bar with ETA."""
    allow_reshard: bool = False
    """Allow ``--resume`` on a different number of processes than the run was saved with. Inexact: the per-rank batches,
    data shards and RNG streams depend on the world size, so the continued run differs from an uninterrupted one."""
    deterministic: bool = False
    """Ask torch for deterministic algorithms (slower on GPU; CPU training is deterministic anyway)."""

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("channels_last", self.channels_last, SWITCHES)
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "lr_anneal_steps",
            "warmup_steps",
            "num_workers",
            "threads",
            "log_every",
            "image_every",
            "eval_every",
            "eval_batches",
            "ckpt_every",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.lr <= 0 or self.lr_final < 0:
            raise ValueError(f"lr must be > 0 and lr_final >= 0, got lr={self.lr}, lr_final={self.lr_final}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 disables), got {self.grad_clip}")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ValueError(f"device {dev!r} is not valid; valid values: {DEVICES_HELP}")


#: Training fields that may change when a run is resumed (they do not alter the trajectory).
RESUMABLE_CHANGES: frozenset[str] = frozenset(
    {
        "steps",
        "num_workers",
        "threads",
        "log_every",
        "image_every",
        "eval_every",
        "ckpt_every",
        "keep_checkpoints",
        "progress",
        "device",
        "out",
        "data",
        "val_data",
        "compile",
        "allow_reshard",
    }
)


def check_choice(name: str, value: Any, allowed: tuple[Any, ...] | list[Any]) -> None:
    """Raise ``ValueError`` naming ``name`` and listing ``allowed`` if ``value`` is not one of them."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; valid values: {', '.join(map(repr, allowed))}")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings of a dataclass's fields (the string literal below each field), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # pragma: no cover - no source (frozen app)
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass's fields."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def config_from_dict(cls: type[C], values: Mapping[str, Any], what: str = "config") -> C:
    """Build dataclass ``cls`` from a mapping; unknown keys raise ``ValueError`` listing valid ones.

    JSON lists are turned back into tuples for tuple-typed fields.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown {what} field(s) {', '.join(unknown)}; valid fields: {', '.join(names)}")
    types = field_types(cls)
    fixed = {}
    for k, v in values.items():
        origin = typing.get_origin(types[k])
        if isinstance(v, list) and (origin is tuple or types[k] is tuple):
            v = tuple(v)
        fixed[k] = v
    return cls(**fixed)


def merge_config(config: C, overrides: Mapping[str, Any], what: str = "config") -> C:
    """A copy of dataclass ``config`` with ``overrides`` applied (validated like the constructor)."""
    values = dataclasses.asdict(config)  # type: ignore[call-overload]
    values.update(overrides)
    return config_from_dict(type(config), values, what)
