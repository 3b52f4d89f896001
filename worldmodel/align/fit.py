"""Fitting an alignment method: adapt a frozen source encoder with unlabeled target frames.

:func:`fit_alignment` returns an adapted :class:`worldmodel.encoders.FrozenEncoder` (see
:mod:`worldmodel.align.encoder`) and a per-step log. It sees source frames, *unpaired* target
frames and nothing else: no target states, no rewards, no paired frames (it is handed
:meth:`FrameSet.without_pairs` copies, and target states are never read). Source states are
read only by the finetune mode's ``"learner"`` term of a supervised learner (its own loss on
labelled sim frames).

Methods (:data:`METHODS`):

* ``"none"``: the unadapted encoder (the gap to close).
* ``"ot"``: minimise ``lambda * OT(source features, adapted target features)`` with one of
  :data:`worldmodel.align.losses.OT_METHODS` (``AlignConfig.loss``), plus a source term that
  keeps what the source policy was trained on (``anchor_weight * |g(z_s) - z_s|^2``); with
  ``mode="finetune"`` optionally the learner's own loss on source scenes too.
* ``"joint-ot"``: DeepJDOT's joint cost on (feature, source-model output) pairs; needs ``head``.
* ``"coral"``, ``"mmd"``: the field's moment-matching baselines (skada's losses), same recipe.
* ``"colour"``: input-space OT colour transfer (:mod:`worldmodel.align.colour`), no training.

Modes (``AlignConfig.mode``): ``"adapter"`` trains a small residual MLP after the frozen
encoder (features precomputed once: fast); ``"finetune"`` trains every weight of the encoder.
Distances are computed on features divided by a fixed scale: the root mean squared distance
between source features (measured once before training), so ``reg`` is relative to the
typical squared distance of the source cloud (1).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from worldmodel.align.colour import fit_colour_map
from worldmodel.align.encoder import FeatureAdapter, aligned_encoder
from worldmodel.align.frames import FrameSet
from worldmodel.align.losses import alignment_loss, joint_ot_loss
from worldmodel.align.names import METHODS, MODES, OT_METHODS, SOURCE_LOSSES
from worldmodel.encoders import FrozenEncoder


@dataclass
class AlignConfig:
    """Settings of one alignment fit."""

    method: str = "ot"
    """One of :data:`METHODS`."""
    loss: str = "sinkhorn"
    """OT loss of ``method="ot"``: one of :data:`worldmodel.align.losses.OT_METHODS`."""
    mode: str = "adapter"
    """One of :data:`MODES`."""
    weight: float = 1.0
    """lambda: weight of the alignment term."""
    anchor_weight: float = 1.0
    """Weight of the source-preservation term ``|f(x_s) - f_0(x_s)|^2`` (scaled units)."""
    source_loss: str = "anchor"
    """Finetune mode's source term, one of :data:`SOURCE_LOSSES`."""
    learner_weight: float = 1.0
    """Weight of the learner's own loss in ``source_loss`` with ``learner`` (use ~1e-3 for GQN's nats per image)."""
    reg: float = 0.05
    """Entropic regularisation (relative to the source cloud's mean squared distance)."""
    reg_m: float = 1.0
    """Marginal relaxation of ``loss="unbalanced"``."""
    steps: int = 300
    """Optimiser steps."""
    batch_size: int = 256
    """Source and target samples per step (adapter mode; finetune uses ``finetune_batch``)."""
    finetune_batch: int = 32
    """Frames per domain per step in finetune mode."""
    lr: float = 1e-3
    """Adam learning rate (finetune mode divides it by 10)."""
    adapter_hidden: int = 256
    """Hidden width of the feature adapter."""
    colour_transport: str = "emd"
    """``ot.da`` transport of ``method="colour"`` (``"emd"`` or ``"sinkhorn"``)."""
    colour_first: bool = False
    """Map target colours onto the source palette first (as ``method="colour"``), then fit the
    method on the mapped target frames; the adapted encoder applies both."""
    seed: int = 0
    """Seed of batch sampling and initialisation (the fit runs on the encoder's device)."""

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("method", self.method, METHODS),
            ("loss", self.loss, OT_METHODS),
            ("mode", self.mode, MODES),
            ("source_loss", self.source_loss, SOURCE_LOSSES),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; valid values: {', '.join(map(repr, allowed))}")
        if self.steps < 0 or self.batch_size < 2 or self.finetune_batch < 2:
            raise ValueError("steps must be >= 0 and batch sizes >= 2")


def features_of(encoder: FrozenEncoder, frames: FrameSet, batch: int = 256) -> torch.Tensor:
    """Features ``[N, D]`` of every frame of a set (CPU, float32)."""
    out = [
        encoder.encode(frames.frames[i : i + batch], frames.viewpoints[i : i + batch]).cpu()
        for i in range(0, len(frames), batch)
    ]
    return torch.cat(out)


def feature_scale(features: torch.Tensor, pairs: int = 4096, seed: int = 0) -> float:
    """Root mean squared distance between random pairs of ``features`` (the unit of the costs)."""
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(len(features), (pairs,), generator=g)
    j = torch.randint(len(features), (pairs,), generator=g)
    return float((features[i] - features[j]).pow(2).sum(1).mean().sqrt().clamp_min(1e-8))


def _align_term(
    config: AlignConfig, zs: torch.Tensor, zt: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor] | None
) -> torch.Tensor:
    if config.method == "joint-ot":
        return joint_ot_loss(zs, zt, head)
    name = config.loss if config.method == "ot" else config.method
    kwargs = {"reg": config.reg, "reg_m": config.reg_m} if name in OT_METHODS else {}
    return alignment_loss(zs, zt, name, **kwargs)


def _check_inputs(config: AlignConfig, encoder: FrozenEncoder, source: FrameSet, target: FrameSet, head: Any) -> None:
    for name, fs in (("source", source), ("target", target)):
        if len(fs) == 0:
            raise ValueError(f"{name} frame set is empty")
        if fs.frames.shape[1:3] != (encoder.image_size, encoder.image_size):
            raise ValueError(
                f"{name} frames are {fs.frames.shape[1]}x{fs.frames.shape[2]}, the encoder expects "
                f"{encoder.image_size}x{encoder.image_size}"
            )
    if config.method == "joint-ot" and head is None:
        raise ValueError("method 'joint-ot' needs the source model's head (e.g. the policy's action mean)")


def fit_alignment(
    encoder: FrozenEncoder,
    source: FrameSet,
    target: FrameSet,
    config: AlignConfig,
    head: nn.Module | None = None,
    source_data: str | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> tuple[FrozenEncoder, list[dict[str, Any]]]:
    """Adapt ``encoder`` to ``target`` frames (see the module doc); returns it and the step log.

    Args:
        encoder: the frozen source encoder (unchanged; the result is a new encoder).
        source, target: frame sets; their paired frames and states are dropped before use.
        config: the method and its settings.
        head: frozen source model on features (``"joint-ot"`` only).
        source_data: dataset directory of source scenes, for the finetune mode's learner loss.
        log: called with each step's record (e.g. a TensorBoard writer's hook).
    """
    _check_inputs(config, encoder, source, target, head)
    source, target = source.without_pairs(), target.without_pairs()
    torch.manual_seed(config.seed)
    if config.method == "none":
        return aligned_encoder(encoder, method="none"), []
    if config.method == "colour":
        cmap = fit_colour_map(target.frames, source.frames, transport=config.colour_transport, seed=config.seed)
        return aligned_encoder(encoder, colour_map=cmap, method="colour", metadata=asdict(config)), []
    cmap = None
    if config.colour_first:
        cmap = fit_colour_map(target.frames, source.frames, transport=config.colour_transport, seed=config.seed)
        target = FrameSet(cmap.map_uint8(target.frames), target.viewpoints, target.states, target.episodes)
    if config.mode == "adapter":
        adapted, history = _fit_adapter(encoder, source, target, config, head, log, progress)
    else:
        adapted, history = _fit_finetune(encoder, source, target, config, head, source_data, log, progress)
    if cmap is not None:  # the same parts, with the colour map in front
        model = adapted.model
        state = model.base.state_dict() if config.mode == "finetune" else None
        adapted = aligned_encoder(
            encoder, model.adapter, cmap, state, method=_name(config), metadata=adapted.metadata.get("alignment")
        )
    return adapted, history


def _fit_adapter(encoder, source, target, config, head, log, progress):
    from tqdm import tqdm

    dev = encoder.device
    zs_all, zt_all = features_of(encoder, source).to(dev), features_of(encoder, target).to(dev)
    scale = feature_scale(zs_all.cpu(), seed=config.seed)
    adapter = FeatureAdapter(encoder.feature_dim, config.adapter_hidden).to(dev)
    opt = torch.optim.Adam(adapter.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    scaled_head = None if head is None else (lambda z: head(z * scale))
    history = []
    for step in tqdm(range(config.steps), desc=f"align {config.method}", disable=not progress):
        t0 = time.perf_counter()
        zs = zs_all[rng.integers(len(zs_all), size=config.batch_size)]
        zt = zt_all[rng.integers(len(zt_all), size=config.batch_size)]
        anchor = (adapter(zs) - zs).pow(2).sum(1).mean() / scale**2
        align = _align_term(config, zs / scale, adapter(zt) / scale, scaled_head)
        loss = config.anchor_weight * anchor + config.weight * align
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        record = dict(
            step=step, loss=float(loss), align=float(align), anchor=float(anchor), seconds=time.perf_counter() - t0
        )
        history.append(record)
        if log is not None:
            log(record)
    adapter.eval().requires_grad_(False)
    meta = {**asdict(config), "feature_scale": scale}
    return aligned_encoder(encoder, adapter=adapter, method=_name(config), metadata=meta), history


def _fit_finetune(encoder, source, target, config, head, source_data, log, progress):
    from tqdm import tqdm

    own_loss = hasattr(encoder.model, "source_loss")  # supervised learners: their loss on labelled source frames
    if "learner" in config.source_loss and not own_loss and (source_data is None or not hasattr(encoder.model, "loss")):
        raise ValueError(
            f"source_loss {config.source_loss!r} needs a learner with source_loss(frames, viewpoints, states), or "
            "source_data (a scene dataset directory) and a learner with loss(batch)"
        )
    frozen = encoder.model
    model = copy.deepcopy(frozen).train().requires_grad_(True)
    dev = encoder.device
    zs_ref = features_of(encoder, source)
    scale = feature_scale(zs_ref, seed=config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr / 10)
    rng = np.random.default_rng(config.seed)
    batches = _learner_batches(source_data, config, dev) if "learner" in config.source_loss and not own_loss else None
    scaled_head = None if head is None else (lambda z: head(z * scale))

    def encode(m: nn.Module, fs: FrameSet, idx: np.ndarray) -> torch.Tensor:
        x = encoder._frames(fs.frames[idx])
        v = encoder._viewpoints(fs.viewpoints[idx], len(idx))
        return m.encode(x, v).float().reshape(len(idx), -1)

    history = []
    for step in tqdm(range(config.steps), desc=f"align {config.method} (finetune)", disable=not progress):
        t0 = time.perf_counter()
        i_s = rng.integers(len(source), size=config.finetune_batch)
        i_t = rng.integers(len(target), size=config.finetune_batch)
        zs0 = zs_ref[i_s].to(dev)
        zt = encode(model, target, i_t)
        loss = config.weight * _align_term(config, zs0 / scale, zt / scale, scaled_head)
        record = dict(step=step, align=float(loss) / max(config.weight, 1e-12))
        if "anchor" in config.source_loss:
            anchor = (encode(model, source, i_s) - zs0).pow(2).sum(1).mean() / scale**2
            loss = loss + config.anchor_weight * anchor
            record["anchor"] = float(anchor)
        if "learner" in config.source_loss:
            if own_loss:  # labels of *source* frames only
                x, v = encoder._frames(source.frames[i_s]), encoder._viewpoints(source.viewpoints[i_s], len(i_s))
                learner = model.source_loss(x, v, torch.as_tensor(source.states[i_s]))
            else:
                learner = model.loss(next(batches))["loss"]
            loss = loss + config.learner_weight * learner
            record["learner"] = float(learner)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        record.update(loss=float(loss), seconds=time.perf_counter() - t0)
        history.append(record)
        if log is not None:
            log(record)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    meta = {**asdict(config), "feature_scale": scale}
    return aligned_encoder(encoder, encoder_state=state, method=_name(config), metadata=meta), history


def write_history(directory: str, history: list[dict[str, Any]], prefix: str = "align", step_key: str = "step") -> None:
    """Every numeric field of a fit's per-step records as TensorBoard scalars in ``directory``."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(directory)) as tb:
        for rec in history:
            for key, value in rec.items():
                if key != step_key:
                    tb.add_scalar(f"{prefix}/{key}", value, rec[step_key])


def _learner_batches(source_data: str, config: AlignConfig, device: torch.device):
    """Endless GQN batches of the source dataset, on the device."""
    from worldmodel.data.loader import make_gqn_loader
    from worldmodel.data.transfer import to_device

    loader = make_gqn_loader(source_data, batch_size=16, max_context=3, seed=config.seed)
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        for batch in loader:
            yield to_device(batch, device)
        epoch += 1


def _name(config: AlignConfig) -> str:
    """Short method label, e.g. ``ot-sinkhorn``, ``coral``, ``ot-emd-finetune``."""
    name = f"ot-{config.loss}" if config.method == "ot" else config.method
    return ("colour+" if config.colour_first else "") + name + ("-finetune" if config.mode == "finetune" else "")


__all__ = [
    "AlignConfig",
    "METHODS",
    "MODES",
    "SOURCE_LOSSES",
    "feature_scale",
    "features_of",
    "fit_alignment",
    "write_history",
]
