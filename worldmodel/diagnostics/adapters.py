"""This toolkit's encoders as differentiable image functions, and their untrained controls.

A :class:`~worldmodel.encoders.FrozenEncoder` runs under ``torch.inference_mode`` (no forward-
or reverse-mode derivatives) and takes uint8 frames, so the diagnostics call the learner inside
it instead: :func:`image_function` returns an ``nn.Module`` ``images [B, C, H, W] (float) ->
tensor`` for

* ``kind="features"``: the encoder's features ``[B, D]`` (what an agent sees);
* ``kind="map"``: its last spatial map (NISO: the encoder grid ``E(x)`` ``[B, d, h, w]``; GQN:
  the per-view representation ``psi(x, v)`` ``[B, r, H/4, W/4]``), for equivariance.

Viewpoints (GQN) are held fixed: the diagnostics transform the image, not the camera.

:func:`untrained_encoder` builds the *untrained control* of a checkpoint: the same learner and
config with the weights it had at step 0 (the training seed's initialisation), frozen the same way.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

KINDS: tuple[str, ...] = ("features", "map")


class EncoderImageFunction(nn.Module):
    """``images -> features or map`` of a learner (see :func:`image_function`)."""

    def __init__(
        self,
        model: nn.Module,
        kind: str = "features",
        viewpoints: torch.Tensor | None = None,
        image_size: int | None = None,
        name: str = "encoder",
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; valid values: {', '.join(KINDS)}")
        self.model = model
        self.kind = kind
        self.viewpoints = viewpoints
        self.image_size = image_size
        self.name = name
        self._spectral = _spectral_cache(model)

    @property
    def network(self) -> nn.Module:
        """The image network whose layers the layer-wise attribution hooks (NISO encoder, GQN psi)."""
        for attr in ("encoder", "psi"):
            sub = getattr(self.model, attr, None)
            if isinstance(sub, nn.Module):
                return sub
        return self.model

    def _viewpoints(self, images: torch.Tensor, viewpoints: torch.Tensor | None) -> torch.Tensor:
        v = viewpoints if viewpoints is not None else self.viewpoints
        if v is None:
            dim = getattr(getattr(self.model, "config", None), "viewpoint_dim", 7)
            return torch.zeros(images.shape[0], dim, dtype=images.dtype, device=images.device)
        v = v.to(device=images.device, dtype=images.dtype)
        if v.shape[0] == 1 and images.shape[0] > 1:
            v = v.expand(images.shape[0], -1)
        if v.shape[-1] == 5:
            from worldmodel.encoders import viewpoint7_torch

            v = viewpoint7_torch(v)
        return v

    def forward(self, images: torch.Tensor, viewpoints: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``[B, D]`` or the spatial map ``[B, C, h, w]`` of float images ``[B, C, H, W]``."""
        with _fixed_spectral(self.model, self._spectral):
            return self._forward(images, viewpoints)

    def refresh(self) -> None:
        """Recompute cached weight-only quantities (NISO's eigenbasis) after the weights changed."""
        self._spectral = _spectral_cache(self.model)

    def _forward(self, images: torch.Tensor, viewpoints: torch.Tensor | None) -> torch.Tensor:
        m = self.model
        if self.kind == "map":
            if hasattr(m, "psi_map"):  # GQN
                return m.psi_map(images, self._viewpoints(images, viewpoints))
            if hasattr(m, "encoder") and hasattr(m, "prepare_images"):  # NISO (its input range applied)
                return m.encoder(m.prepare_images(images))
            raise ValueError(f"{self.name}: no spatial map known for {type(m).__name__}; use kind='features'")
        return m.encode(images, self._viewpoints(images, viewpoints))


def _spectral_cache(model: nn.Module) -> tuple[torch.Tensor, ...] | None:
    """NISO's learned eigenbasis ``(Phi, Lambda, M)``, computed now (outside any transform), or None.

    ``Niso.spectral()`` projects onto the M-orthonormal matrices with an old-style
    ``autograd.Function`` (its stable SVD backward), which ``torch.func.jvp`` / ``linearize``
    refuse to run even when no tangent reaches it. The eigenbasis does not depend on the image,
    so the adapter computes it once at construction and the model's ``spectral`` returns it
    during each call (see :func:`_fixed_spectral`).
    """
    if getattr(model, "operator", None) is None or not hasattr(model, "spectral"):
        return None
    with torch.no_grad():
        return tuple(t.detach() for t in model.spectral())


@contextlib.contextmanager
def _fixed_spectral(model: nn.Module, cached: tuple[torch.Tensor, ...] | None):
    if cached is None or "spectral" in vars(model):
        yield
        return
    model.spectral = lambda: cached  # an instance attribute shadows the method for this call
    try:
        yield
    finally:
        del model.spectral


def image_function(
    encoder: Any, kind: str = "features", viewpoints: torch.Tensor | None = None
) -> EncoderImageFunction:
    """A differentiable ``images -> tensor`` module of a frozen encoder (or a learner module).

    Args:
        encoder: a :class:`~worldmodel.encoders.FrozenEncoder` or a learner with ``encode``.
        kind: ``"features"`` (``[B, D]``) or ``"map"`` (the last spatial map).
        viewpoints: fixed viewpoints ``[B, 5|7]`` or ``[1, 5|7]`` for learners that use them
            (default zeros); a ``viewpoints`` argument of the call overrides them.
    """
    from worldmodel.encoders import FrozenEncoder

    if isinstance(encoder, FrozenEncoder):
        return EncoderImageFunction(encoder.model, kind, viewpoints, encoder.image_size, encoder.name).eval()
    if not hasattr(encoder, "encode"):
        raise TypeError(
            f"expected a FrozenEncoder or a learner with encode(frames, viewpoints), got {type(encoder).__name__}"
        )
    size = getattr(getattr(encoder, "config", None), "image_size", None)
    return EncoderImageFunction(encoder, kind, viewpoints, size, type(encoder).__name__.lower()).eval()


def untrained_encoder(path: str, device: str | None = None, seed: int | None = None, out: str | None = None) -> Any:
    """The untrained control of a checkpoint: same learner, config and framing, weights at step 0.

    The model is rebuilt from the checkpoint's ``config.json`` under ``torch.manual_seed(seed)``
    (default: the run's training seed, so these are the exact initial weights of the trained run,
    as the engine seeds before building). With ``out``, the control is written there as an
    ordinary checkpoint by :func:`worldmodel.untrained.make_untrained` (``wm train untrained``)
    and loaded back; without it (or where that helper is missing) it is built in memory.
    """
    from worldmodel.checkpoint import read_checkpoint_config
    from worldmodel.encoders import FrozenEncoder, load_encoder

    config = read_checkpoint_config(path)
    if seed is None:
        seed = int(config.get("train", {}).get("seed", 0))
    if out is not None:
        try:
            from worldmodel.untrained import make_untrained
        except ImportError:  # pragma: no cover - the helper ships with the toolkit
            make_untrained = None
        if make_untrained is not None:
            enc = load_encoder(str(make_untrained(path, out, seed=seed)), device=device)
            enc.name = f"{enc.name} (untrained)"
            enc.metadata.update({"untrained_control": True, "init_seed": seed})
            return enc
    from worldmodel.models.registry import get_learner
    from worldmodel.train.config import config_from_dict

    trained = load_encoder(path, device=device)
    spec = get_learner(config["learner"])
    model_config = config_from_dict(spec.config_cls(), dict(config["model"]), f"{spec.name} model config")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.build(model_config)
    model = model.to(device=trained.device, dtype=trained.dtype)
    return FrozenEncoder(
        model,
        feature_dim=trained.feature_dim,
        image_size=trained.image_size,
        name=f"{trained.name} (untrained)",
        uses_viewpoint=trained.uses_viewpoint,
        dtype=trained.dtype,
        metadata={**trained.metadata, "untrained_control": True, "init_seed": seed},
    )
