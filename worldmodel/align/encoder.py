"""Adapted encoders: a frozen source encoder plus what an alignment method learned.

An :class:`AlignedModel` runs, in order: an optional colour map of the input pixels
(:class:`worldmodel.align.colour.ColourMap`, input-space OT), the base learner's ``encode``
(its weights fine-tuned or as trained) and an optional :class:`FeatureAdapter` on the features.
:func:`aligned_encoder` wraps it as a :class:`worldmodel.encoders.FrozenEncoder`, so agents use an
adapted encoder exactly as they use the original one (``make_env(..., encoder=...)``).

On disk (:func:`save_aligned` / :func:`load_frozen`) an adapted encoder is a checkpoint directory
like a learner's: ``config.json`` (learner ``"aligned"``, the base checkpoint's path and SHA-256,
method and settings) and ``model.safetensors`` (the adapter, the fine-tuned encoder weights and
the colour table, whichever the method has). ``wm agent train/compare --encoder DIR`` load it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worldmodel.encoders import FrozenEncoder

ALIGNED_LEARNER = "aligned"
"""The ``learner`` an adapted encoder's ``config.json`` names."""


class FeatureAdapter(nn.Module):
    """Residual MLP on features, ``g(z) = z + W2 relu(W1 z)``, the identity at initialisation.

    The output layer starts at zero so that an adapter that has not been trained changes
    nothing; training moves target features towards the source cloud.
    """

    def __init__(self, feature_dim: int, hidden: int = 256) -> None:
        super().__init__()
        if feature_dim < 1 or hidden < 1:
            raise ValueError(f"feature_dim and hidden must be >= 1, got {feature_dim} and {hidden}")
        self.feature_dim, self.hidden = int(feature_dim), int(hidden)
        self.net = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.net(z)


class AlignedModel(nn.Module):
    """``adapter(base.encode(colour_map(frames), viewpoints))`` (each stage optional)."""

    def __init__(self, base: nn.Module, adapter: FeatureAdapter | None = None, colour_map: Any = None) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter
        self.colour_map = colour_map

    def encode(self, frames: torch.Tensor, viewpoints: torch.Tensor) -> torch.Tensor:
        if self.colour_map is not None:
            frames = self.colour_map(frames)
        z = self.base.encode(frames, viewpoints)
        z = z.float().reshape(z.shape[0], -1)
        return self.adapter(z) if self.adapter is not None else z


def aligned_encoder(
    base: FrozenEncoder,
    adapter: FeatureAdapter | None = None,
    colour_map: Any = None,
    encoder_state: dict[str, torch.Tensor] | None = None,
    method: str = "none",
    metadata: dict[str, Any] | None = None,
) -> FrozenEncoder:
    """A frozen encoder running ``base`` with an alignment method's parts.

    Args:
        base: the unadapted encoder (its model is copied when ``encoder_state`` replaces its weights).
        adapter: feature adapter applied after the encoder, or ``None``.
        colour_map: input colour map applied before it, or ``None``.
        encoder_state: fine-tuned weights of ``base.model``, or ``None`` to keep them.
        method: name recorded in ``name`` and ``metadata``.
    """
    import copy

    model = base.model
    if encoder_state is not None:
        model = copy.deepcopy(model)
        model.load_state_dict(encoder_state, strict=True)
    aligned = AlignedModel(model, adapter, colour_map)
    meta = {**base.metadata, "alignment": {"method": method, **(metadata or {})}}
    return FrozenEncoder(
        aligned,
        feature_dim=base.feature_dim,
        image_size=base.image_size,
        name=f"{base.name}+{method}",
        uses_viewpoint=base.uses_viewpoint,
        device=base.device,
        dtype=base.dtype,
        metadata=meta,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_aligned(
    out: str | Path,
    base_path: str | Path,
    method: str,
    settings: dict[str, Any],
    adapter: FeatureAdapter | None = None,
    colour_map: Any = None,
    encoder_state: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write an adapted encoder as a checkpoint directory ``out`` (see the module doc)."""
    from worldmodel.atomic import atomic_write_json
    from worldmodel.checkpoint import (
        CHECKPOINT_FORMAT,
        CHECKPOINT_VERSION,
        MODEL_FILE,
        _save_tensors,
        resolve_checkpoint,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_dir = resolve_checkpoint(base_path).resolve()
    tensors: dict[str, torch.Tensor] = {}
    if adapter is not None:
        tensors.update({f"adapter.{k}": v for k, v in adapter.state_dict().items()})
    if colour_map is not None:
        tensors["colour_map.table"] = colour_map.table
    if encoder_state is not None:
        tensors.update({f"encoder.{k}": v for k, v in encoder_state.items()})
    if not tensors:  # safetensors needs one tensor: a marker for "nothing learned"
        tensors["none"] = torch.zeros(1)
    _save_tensors(out / MODEL_FILE, tensors)
    config = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "learner": ALIGNED_LEARNER,
        "step": 0,
        "model": {
            "method": method,
            "base": str(base_dir),
            "base_sha256": _sha256(base_dir / MODEL_FILE),
            "adapter_hidden": adapter.hidden if adapter is not None else None,
            "has_colour_map": colour_map is not None,
            "fine_tuned": encoder_state is not None,
            "settings": settings,
        },
        "files": {MODEL_FILE: _sha256(out / MODEL_FILE)},
        **(extra or {}),
    }
    atomic_write_json(out / "config.json", json.loads(json.dumps(config, default=str)))
    return out


def load_frozen(path: str, device: str | None = None, verify: bool = True, **unused: Any) -> FrozenEncoder:
    """Load an adapted encoder written by :func:`save_aligned` (safetensors + JSON; never unpickles).

    The base checkpoint is loaded from the path recorded in ``config.json``; with ``verify`` its
    SHA-256 and that of ``model.safetensors`` must match the recorded ones.
    """
    from worldmodel.align.colour import ColourMap
    from worldmodel.checkpoint import MODEL_FILE, CheckpointError, load_tensors, read_checkpoint_config
    from worldmodel.encoders import load_encoder

    if unused:
        raise TypeError(f"load_frozen got unexpected option(s) {sorted(unused)}; valid: device, verify")
    config = read_checkpoint_config(path)
    if config["learner"] != ALIGNED_LEARNER:
        raise ValueError(f"{path}: checkpoint is of learner {config['learner']!r}, not {ALIGNED_LEARNER!r}")
    directory = Path(config["checkpoint_dir"])
    model_cfg = config["model"]
    base_dir = Path(model_cfg["base"])
    if verify:
        for file, want in (
            (directory / MODEL_FILE, config.get("files", {}).get(MODEL_FILE)),
            (base_dir / MODEL_FILE, model_cfg["base_sha256"]),
        ):
            if want is not None and _sha256(file) != want:
                raise CheckpointError(f"{file}: SHA-256 differs from the one recorded in {directory / 'config.json'}")
    base = load_encoder(str(base_dir), device=device)
    tensors = load_tensors(directory / MODEL_FILE)
    adapter = None
    if model_cfg.get("adapter_hidden"):
        adapter = FeatureAdapter(base.feature_dim, int(model_cfg["adapter_hidden"]))
        adapter.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("adapter.")})
    colour_map = ColourMap(tensors["colour_map.table"]) if model_cfg.get("has_colour_map") else None
    encoder_state = None
    if model_cfg.get("fine_tuned"):
        encoder_state = {k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")}
    enc = aligned_encoder(base, adapter, colour_map, encoder_state, method=str(model_cfg["method"]))
    return enc.to(base.device) if device is not None else enc


__all__ = ["ALIGNED_LEARNER", "AlignedModel", "FeatureAdapter", "aligned_encoder", "load_frozen", "save_aligned"]
