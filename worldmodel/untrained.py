"""Untrained encoders: the control that separates learned features from architecture.

:func:`make_untrained` reads a trained learner's checkpoint (or run directory), builds the same
model from the same model config with freshly initialised weights (seeded, so the same seed gives
the same weights), and saves it as an ordinary checkpoint (``model.safetensors`` +
``config.json``) that :func:`worldmodel.load_encoder` loads like any other. Its ``config.json``
records what it is::

    "step": 0,
    "untrained": {"seed": 0, "like": "<source checkpoint dir>", "like_sha256": "<source model.safetensors digest>",
                  "like_step": 12000, "like_learner": "gqn"}

The checkpoint's own ``files`` digest (``model.safetensors`` sha256) differs from the source's, so
a comparison's grid signature tells the two apart. ``wm train untrained --like RUN --out DIR
--seed S`` is the command-line front end. Torch is imported only when a function runs, so
``wm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: Key of ``config.json`` that marks an untrained checkpoint.
UNTRAINED_KEY = "untrained"


def untrained_info(path: str | Path) -> dict[str, Any] | None:
    """The ``untrained`` record of a checkpoint, or ``None`` for a trained one."""
    from worldmodel.checkpoint import read_checkpoint_config

    info = read_checkpoint_config(path).get(UNTRAINED_KEY)
    return dict(info) if isinstance(info, dict) else None


def _build_fresh(learner: str, model_values: dict[str, Any], seed: int) -> Any:
    import torch

    from worldmodel.models.registry import get_learner
    from worldmodel.train.config import config_from_dict

    spec = get_learner(learner)
    config = config_from_dict(spec.config_cls(), model_values, f"{learner} model config")
    # fork_rng: seed the initialisation without changing the caller's global torch RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return spec.build(config)


def make_untrained(like: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Write an untrained twin of checkpoint ``like`` to ``out`` and return the checkpoint path.

    Args:
        like: a trained checkpoint directory or run directory (its newest checkpoint is used).
        out: directory to write the checkpoint into. It must not exist or be empty, unless it
            already holds the untrained twin of the same source weights with the same seed (then it
            is returned unchanged, so scripts may rerun the command).
        seed: torch seed of the weight initialisation.

    Raises:
        ValueError: ``out`` holds something else, the source is itself untrained with another
            source, or the fresh model's tensors do not match the source's names and shapes.
    """
    from worldmodel.checkpoint import CONFIG_FILE, MODEL_FILE, load_model_state, save_checkpoint

    source_state, source = load_model_state(like, device="cpu", verify=True)
    source_dir = Path(source["checkpoint_dir"])
    source_sha = source.get("files", {}).get(MODEL_FILE, {}).get("sha256")
    if source_sha is None:
        from worldmodel.atomic import file_sha256

        source_sha = file_sha256(source_dir / MODEL_FILE)
    info = {
        "seed": int(seed),
        "like": str(source_dir.resolve()),
        "like_sha256": source_sha,
        "like_step": source.get("step"),
        "like_learner": source["learner"],
    }
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        if (target / CONFIG_FILE).is_file() and (target / MODEL_FILE).is_file():
            old = untrained_info(target) or {}
            if old.get("like_sha256") == source_sha and old.get("seed") == int(seed):
                return target
        raise ValueError(
            f"{target} already exists and is not the untrained twin of {source_dir} with seed {seed}; "
            "choose another --out (or delete it)"
        )

    model = _build_fresh(source["learner"], dict(source["model"]), seed)
    fresh = model.state_dict()
    mismatch = sorted(
        k
        for k in set(fresh) | set(source_state)
        if k not in fresh or k not in source_state or tuple(fresh[k].shape) != tuple(source_state[k].shape)
    )
    if mismatch:
        shown = ", ".join(mismatch[:5]) + (" ..." if len(mismatch) > 5 else "")
        raise ValueError(
            f"a fresh {source['learner']} built from {source_dir / CONFIG_FILE} does not have the source's tensors "
            f"({len(mismatch)} differ in name or shape: {shown}); cannot make an untrained twin"
        )
    meta = {
        "learner": source["learner"],
        "preset": source.get("preset"),
        "model": dict(source["model"]),
        "step": 0,
        "data": source.get("data"),
        UNTRAINED_KEY: info,
    }
    return save_checkpoint(target, fresh, meta)


def add_untrained_parser(sub: Any) -> None:
    """Add ``wm train untrained``."""
    p = sub.add_parser(
        "untrained",
        help="an untrained twin of a trained encoder (same architecture, fresh seeded weights)",
        description="Write a checkpoint with the architecture of --like (a checkpoint or run directory) and freshly "
        "initialised weights: the control arm that separates learned features from architecture. config.json "
        "records 'untrained' with the seed and the source's model.safetensors sha256.",
    )
    p.add_argument("--like", required=True, help="trained checkpoint or run directory whose architecture is copied")
    p.add_argument("--out", required=True, help="checkpoint directory to write (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation (default 0)")
    p.set_defaults(handler=handle_untrained)


def handle_untrained(args: argparse.Namespace) -> int:
    """Handler of ``wm train untrained``."""
    path = make_untrained(args.like, args.out, seed=args.seed)
    print(json.dumps({"checkpoint": str(path), **(untrained_info(path) or {})}, indent=2))
    return 0
