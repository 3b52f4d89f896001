"""Generative Query Network (Eslami et al., Science 2018) as a learner of this toolkit.

:class:`GQN` combines a representation network psi (:mod:`gqn_representation`) with the
generation network (:mod:`gqn_generation`) and provides:

* ``loss(batch)``: the negative ELBO per image, averaged over the batch, with
  ``ELBO = E_q log N(x_q | mu, sigma^2) - sum_l KL(q_l || pi_l)`` in nats per image and bits per
  dimension (of the continuous Gaussian density over the 3*H*W values in [0,1]); sigma follows the
  config's linear annealing via ``set_step``.
* ``eval_loss(batch)``: the same at the final sigma (so held-out numbers are comparable over a
  run) plus the pixel MSE of a posterior reconstruction.
* ``represent(context)`` (r for a set of views), ``encode(frames, viewpoints)`` (one view: psi
  pooled over space by default), ``generate`` (novel views from the prior), ``reconstruct``
  (from the posterior), ``surprise`` (Bayesian surprise KL(q(z|x,y) || p(z|y)) per query) and
  ``surprise_curve`` (its mean as a function of the number of context views).

Batches follow the data contract after :func:`worldmodel.data.transfer.to_device`:
``context_frames [B,K,3,H,W]`` and ``query_frame [B,3,H,W]`` floats in [0,1],
``context_viewpoints [B,K,7]`` and ``query_viewpoint [B,7]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from worldmodel.models.gqn_config import LATENT_STRIDE, GQNConfig
from worldmodel.models.gqn_generation import GenerationNetwork, GenerationOutput
from worldmodel.models.gqn_lifted import LiftedRepresentation
from worldmodel.models.gqn_representation import aggregate, make_representation
from worldmodel.train.schedules import linear_anneal

__all__ = ["GQN", "GQNConfig", "build", "load_frozen"]


class GQN(nn.Module):
    """Representation network + conditional generator; see the module docstring."""

    def __init__(self, config: GQNConfig) -> None:
        super().__init__()
        if config.image_size is None:
            raise ValueError("GQNConfig.image_size must be set before building the model")
        self.config = config
        # 1 / position_scale for x, y, z; 1 for the angle terms (a constant, not trained)
        scale = torch.ones(config.viewpoint_dim)
        scale[:3] = 1.0 / float(config.position_scale or 1.0)
        self.register_buffer("viewpoint_scale", scale, persistent=False)
        if config.representation == "lifted":
            self.psi = LiftedRepresentation(
                config.volume_channels,
                config.image_size,
                tuple(config.volume_bounds),
                tuple(config.volume_size),
                config.fovy_deg,
                float(config.position_scale or 1.0),
                config.r_channels,
                config.ray_samples,
                tuple(config.ray_depth),
            )
        else:
            self.psi = make_representation(
                config.representation, config.r_channels, config.viewpoint_dim, config.image_size
            )
        self.generator = GenerationNetwork(config)
        # Not persistent: it is a function of the step, restored by set_step on resume.
        self.register_buffer("sigma", torch.tensor(float(config.sigma_start)), persistent=False)

    # ------------------------------------------------------------------ schedules and checks

    def sigma_at(self, step: int) -> float:
        """Pixel standard deviation at training step ``step`` (linear annealing)."""
        c = self.config
        return linear_anneal(c.sigma_start, c.sigma_end, c.sigma_anneal_steps, step)

    def set_step(self, step: int) -> None:
        """Set the annealed sigma for the training step about to run."""
        self.sigma.fill_(self.sigma_at(step))

    def _check_images(self, x: torch.Tensor, what: str) -> None:
        size = self.config.image_size
        if x.shape[-3:] != (3, size, size):
            raise ValueError(
                f"GQN expects {what} of shape [...,3,{size},{size}] (float in [0,1]), got {tuple(x.shape)}"
            )
        if x.dtype == torch.uint8:
            raise ValueError(f"{what} must be float in [0,1]; convert with worldmodel.data.transfer.to_device")

    def _viewpoints(self, v: torch.Tensor) -> torch.Tensor:
        """Network input from 7-d viewpoints: positions divided by ``position_scale``."""
        if v.shape[-1] != self.config.viewpoint_dim:
            raise ValueError(f"GQN expects {self.config.viewpoint_dim}-d viewpoints, got shape {tuple(v.shape)}")
        return v * self.viewpoint_scale.to(v.dtype)

    # ------------------------------------------------------------------ representation

    def psi_map(self, frames: torch.Tensor, viewpoints: torch.Tensor) -> torch.Tensor:
        """Per-view representation psi(x, v): ``[B,3,H,W], [B,7] -> [B,C,h,w]``."""
        self._check_images(frames, "frames")
        return self.psi(frames, self._viewpoints(viewpoints))

    def represent(
        self,
        context_frames: torch.Tensor,
        context_viewpoints: torch.Tensor,
        query_viewpoint: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scene representation ``r = sum_k psi(x_k, v_k)`` on the latent grid: ``[B,C,H/4,W/4]``.

        ``context_frames [B,K,3,H,W]``, ``context_viewpoints [B,K,7]``; K may be 0 (r = 0).
        Pooled representations (1x1) are broadcast to the grid. The 'lifted' representation sums
        world volumes and renders the sum into ``query_viewpoint [B,7]`` (required for it).
        """
        self._check_images(context_frames, "context_frames")
        b, k = context_frames.shape[:2]
        grid = self.config.image_size // LATENT_STRIDE
        lifted = self.config.representation == "lifted"
        if lifted and query_viewpoint is None:
            raise ValueError("the 'lifted' representation renders r into the query view: pass query_viewpoint")
        if k == 0:
            dtype = next(self.parameters()).dtype
            if not lifted:
                return context_frames.new_zeros(b, self.config.r_channels, grid, grid, dtype=dtype)
            gx, gy, gz = self.config.volume_size
            r = context_frames.new_zeros(b, self.config.volume_channels, gz, gy, gx, dtype=dtype)
        else:
            r = aggregate(self.psi, context_frames, self._viewpoints(context_viewpoints))
        if lifted:
            return self.psi.render(r, self._viewpoints(query_viewpoint), grid)
        if r.shape[-1] != grid:
            r = r.expand(-1, -1, grid, grid)
        return r

    def encode(self, frames: torch.Tensor, viewpoints: torch.Tensor) -> torch.Tensor:
        """Features of single views ``[B, feature_dim]``: psi averaged over space ('pooled', default)
        or the flattened psi map ('spatial'), see ``GQNConfig.features``."""
        r = self.psi_map(frames, viewpoints)
        if self.config.features == "pooled":
            return r.flatten(2).mean(dim=2)
        return r.flatten(1)

    # ------------------------------------------------------------------ objective

    def _elbo(
        self, batch: Mapping[str, torch.Tensor], sigma: float | torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], GenerationOutput]:
        x, v = batch["query_frame"], batch["query_viewpoint"]
        self._check_images(x, "query_frame")
        r = self.represent(batch["context_frames"], batch["context_viewpoints"], v)
        out = self.generator.run(self._viewpoints(v), r, x)
        sigma_t = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        # Gaussian log-density summed over the 3*H*W values (written out: no per-element std tensor).
        dims = x[0].numel()
        sq = (x.float() - out.mean).pow(2).flatten(1).sum(dim=1)
        nll = 0.5 * sq / sigma_t**2 + dims * (torch.log(sigma_t) + 0.5 * math.log(2 * math.pi))
        kl = out.kl
        neg_elbo = nll + kl
        loss = neg_elbo if self.config.kl_weight == 1.0 else nll + self.config.kl_weight * kl
        metrics = {
            "loss": loss.mean(),
            "elbo": -neg_elbo.mean(),
            "nll": nll.mean(),
            "kl": kl.mean(),
            "bits_per_dim": neg_elbo.mean() / (dims * math.log(2.0)),
            "sigma": sigma_t.detach(),
        }
        return metrics, out

    def loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training loss ``nll + kl_weight * kl`` per image (nats; the negative ELBO at ``kl_weight = 1``) as
        ``"loss"``, plus elbo, nll, kl, bits_per_dim, sigma."""
        metrics, _ = self._elbo(batch, self.sigma)
        return metrics

    forward = loss

    def eval_loss(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Held-out metrics at the final sigma: loss, elbo, nll, kl, bits_per_dim, sigma, mse."""
        metrics, out = self._elbo(batch, self.config.sigma_end)
        metrics["mse"] = (out.mean - batch["query_frame"].float()).pow(2).mean()
        return {k: v.detach() for k, v in metrics.items()}

    # ------------------------------------------------------------------ sampling and surprise

    @torch.no_grad()
    def generate(
        self, context_frames: torch.Tensor, context_viewpoints: torch.Tensor, query_viewpoint: torch.Tensor
    ) -> torch.Tensor:
        """Novel view: mean image ``[B,3,H,W]`` (clamped to [0,1]) of a sample of the latents from the prior."""
        r = self.represent(context_frames, context_viewpoints, query_viewpoint)
        return self.generator.run(self._viewpoints(query_viewpoint), r, None).mean.clamp(0, 1)

    @torch.no_grad()
    def reconstruct(
        self,
        context_frames: torch.Tensor,
        context_viewpoints: torch.Tensor,
        query_frame: torch.Tensor,
        query_viewpoint: torch.Tensor,
    ) -> torch.Tensor:
        """Mean image ``[B,3,H,W]`` (clamped to [0,1]) with latents drawn from the posterior given the query image."""
        self._check_images(query_frame, "query_frame")
        r = self.represent(context_frames, context_viewpoints, query_viewpoint)
        return self.generator.run(self._viewpoints(query_viewpoint), r, query_frame).mean.clamp(0, 1)

    @torch.no_grad()
    def surprise(
        self,
        context_frames: torch.Tensor,
        context_viewpoints: torch.Tensor,
        query_frame: torch.Tensor,
        query_viewpoint: torch.Tensor,
        samples: int = 1,
    ) -> torch.Tensor:
        """Bayesian surprise ``KL(q(z | x_q, y) || p(z | y))`` in nats per query ``[B]``.

        ``y`` is the context plus the query viewpoint. The KL of the autoregressive latent is the
        sum over steps of the per-step Gaussian KLs along posterior samples, averaged over
        ``samples`` draws.
        """
        self._check_images(query_frame, "query_frame")
        r = self.represent(context_frames, context_viewpoints, query_viewpoint)
        v = self._viewpoints(query_viewpoint)
        total = sum(self.generator.run(v, r, query_frame).kl for _ in range(samples))
        return total / samples

    @torch.no_grad()
    def surprise_curve(
        self,
        frames: torch.Tensor,
        viewpoints: torch.Tensor,
        max_context: int | None = None,
        query_index: int = -1,
        samples: int = 1,
    ) -> dict[int, float]:
        """Mean Bayesian surprise of one query view as the context grows.

        Args:
            frames: views of B scenes ``[B,V,3,H,W]`` (floats in [0,1]).
            viewpoints: their viewpoints ``[B,V,7]``.
            max_context: largest context size (default V - 1).
            query_index: which view is the query; the context is the first k of the others.
            samples: posterior samples per estimate.

        Returns:
            ``{k: mean surprise in nats}`` for k = 0..max_context.
        """
        v_count = frames.shape[1]
        q = query_index % v_count
        others = [i for i in range(v_count) if i != q]
        max_context = len(others) if max_context is None else max_context
        if not 0 <= max_context <= len(others):
            raise ValueError(
                f"max_context must be in 0..{len(others)} for scenes of {v_count} views, got {max_context}"
            )
        out = {}
        for k in range(max_context + 1):
            idx = others[:k]
            kl = self.surprise(frames[:, idx], viewpoints[:, idx], frames[:, q], viewpoints[:, q], samples=samples)
            out[k] = float(kl.mean())
        return out

    @torch.no_grad()
    def visualise(self, batch: Mapping[str, torch.Tensor], scenes: int = 4) -> dict[str, torch.Tensor]:
        """Image grid ``[n, K+3, 3, H, W]``: per scene, the K context views, the query,
        its posterior reconstruction and a prior sample of the query view."""
        n = min(scenes, batch["query_frame"].shape[0])
        cf, cv = batch["context_frames"][:n].float(), batch["context_viewpoints"][:n]
        qf, qv = batch["query_frame"][:n].float(), batch["query_viewpoint"][:n]
        recon = self.reconstruct(cf, cv, qf, qv)
        sample = self.generate(cf, cv, qv)
        grid = torch.cat((cf, qf[:, None], recon[:, None], sample[:, None]), dim=1)
        return {"context|query|reconstruction|prior_sample": grid.float().clamp(0, 1).cpu()}


def build(config: GQNConfig) -> GQN:
    """Registry builder: the GQN of ``config``."""
    return GQN(config)


def load_frozen(
    path: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    features: str | None = None,
    verify: bool = True,
    **unused: Any,
) -> Any:
    """Load a GQN checkpoint as a :class:`worldmodel.encoders.FrozenEncoder`.

    Args:
        path: checkpoint directory or run directory (newest checkpoint).
        device: where to run (default CPU).
        dtype: compute dtype (``torch.float32`` default; ``"bfloat16"`` on GPU halves memory).
        features: override ``GQNConfig.features`` ('pooled': psi averaged over space, D = r_channels;
            'spatial': flattened psi map).
        verify: check the weights' SHA-256 against ``config.json``.

    The encoder expects images of the training size, uint8 ``[B,H,W,3]`` or float ``[B,3,H,W]``,
    and viewpoints ``[B,5]`` or ``[B,7]``; it returns float32 ``[B, D]``.
    """
    from worldmodel.checkpoint import CheckpointError, load_model_state
    from worldmodel.encoders import FrozenEncoder
    from worldmodel.train.config import config_from_dict

    if unused:
        raise TypeError(
            f"load_frozen got unexpected option(s) {sorted(unused)}; valid: device, dtype, features, verify"
        )
    state, meta = load_model_state(path, device="cpu", verify=verify)
    if meta.get("learner") != "gqn":
        raise ValueError(f"{path}: checkpoint is of learner {meta.get('learner')!r}, not 'gqn'")
    values = dict(meta["model"])
    if features is not None:
        values["features"] = features
    config = config_from_dict(GQNConfig, values, "gqn model config")
    model = GQN(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{meta['checkpoint_dir']}: weights do not match the GQN config in config.json ({err})"
        ) from err
    if isinstance(dtype, str):
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype {dtype!r} is not valid; valid values: 'float32', 'bfloat16', 'float16'")
        dtype = getattr(torch, dtype)
    dtype = dtype or torch.float32
    model = model.to(device=device or "cpu", dtype=dtype)
    return FrozenEncoder(
        model,
        feature_dim=config.feature_dim,
        image_size=int(config.image_size),
        name="gqn",
        uses_viewpoint=True,
        device=device,
        dtype=dtype,
        metadata={
            "checkpoint": meta["checkpoint_dir"],
            "step": meta.get("step"),
            "representation": config.representation,
            "features": config.features,
        },
    )
