"""GQN generation network: a conditional DRAW-like VAE with an autoregressive latent over L steps.

At every step l = 1..L (state on the H/4 x W/4 latent grid):

* prior      pi(z_l | v_q, r, z_<l)    = N(head_pi(h^g_{l-1}))
* inference  h^e_l = C^e(h^g_{l-1}; x_q, v_q, r, h^e_{l-1}),  q(z_l | x_q, v_q, r, z_<l) = N(head_q(h^e_l))
* generator  h^g_l = C^g(z_l; v_q, r, h^g_{l-1}),  canvas u_l = u_{l-1} + Delta_l(h^g_l)  (x4 transposed conv)
* output     x ~ N(conv1x1(u_L), sigma^2)  (optionally squashed by a sigmoid, see ``GQNConfig.mean_activation``)

C^e and C^g are Conv-LSTM cores, one per step (unshared, the paper's default) or one for all
steps (shared). The query image enters the inference core as a space-to-depth rearrangement
(lossless, parameter-free) of its 4x4 blocks.

Why hand-written: the architecture is the paper's contribution and no maintained library
provides it. Implementation detail of our own: each core's gate convolution over
``cat(dynamic input, h, condition)`` is split into a conv of the per-step inputs and a conv of
the step-independent condition (x_q, v_q, r), which is linear and so computed once per forward
when the core is shared (an exact rewrite of the same convolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

from worldmodel.models.gqn_config import LATENT_STRIDE, GQNConfig
from worldmodel.models.gqn_representation import broadcast_viewpoint


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM whose gates see ``cat(input, h)`` plus a precomputable condition term.

    ``condition(c)`` (with the gate bias) is computed by the caller, once per forward for a
    shared core. A cell built with ``recurrent=False`` only ever runs from a zero state with a
    zero input (the first inference step of unshared cores), so it has no recurrent weights
    that could never receive a gradient.
    """

    def __init__(
        self, input_channels: int, condition_channels: int, hidden_channels: int, kernel_size: int, recurrent: bool = True
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.hidden_channels = hidden_channels
        self.condition = nn.Conv2d(condition_channels, 4 * hidden_channels, kernel_size, padding=pad)
        self.recurrent = (
            nn.Conv2d(input_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=pad, bias=False)
            if recurrent
            else None
        )
        with torch.no_grad():  # forget-gate bias 1: remember by default early in training
            self.condition.bias.zero_()
            self.condition.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)

    def forward(
        self, x: torch.Tensor | None, condition: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from ``state`` (``None``: zeros) with input ``x`` (``None``: zeros); returns ``(h, c)``."""
        gates = condition
        if x is not None or state is not None:
            if self.recurrent is None:
                raise RuntimeError("this Conv-LSTM cell has no recurrent weights: it only runs a first step from zeros")
            ref = x if x is not None else state[0]
            b, _, hh, ww = ref.shape
            h = state[0] if state is not None else ref.new_zeros(b, self.hidden_channels, hh, ww)
            inp = h if x is None else torch.cat((x, h), dim=1)
            gates = gates + self.recurrent(inp)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(g)
        if state is not None:
            c = c + torch.sigmoid(f) * state[1]
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


@dataclass
class GenerationOutput:
    """Per-image results of one pass of the generation network."""

    mean: torch.Tensor
    """Mean image ``[B,3,H,W]`` (float32; within [0,1] only with the sigmoid activation)."""
    kl: torch.Tensor | None
    """Sum over steps and latent units of KL(q_l || pi_l) per image ``[B]`` (None when sampling from the prior)."""
    kl_steps: torch.Tensor | None = None
    """KL per step ``[B, L]``."""


def _gaussian(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, raw = params.float().chunk(2, dim=1)
    return mu, F.softplus(raw) + 1e-4


class GenerationNetwork(nn.Module):
    """Prior, posterior, Conv-LSTM cores and canvas of the GQN generator."""

    def __init__(self, config: GQNConfig) -> None:
        super().__init__()
        cfg = config
        self.steps = cfg.generation_steps
        hid, z, k = cfg.hidden_channels, cfg.z_channels, cfg.kernel_size
        x_channels = 3 * LATENT_STRIDE**2
        cond_g = cfg.viewpoint_dim + cfg.r_channels
        cond_e = x_channels + cond_g
        cores = 1 if cfg.shared_core else cfg.generation_steps
        # Unshared: the first inference core only ever sees zeros besides its condition.
        self.inference_cores = nn.ModuleList(
            ConvLSTMCell(hid, cond_e, hid, k, recurrent=cfg.shared_core or i > 0) for i in range(cores)
        )
        self.generation_cores = nn.ModuleList(ConvLSTMCell(z, cond_g, hid, k) for _ in range(cores))
        self.upsamplers = nn.ModuleList(
            nn.ConvTranspose2d(hid, hid, kernel_size=LATENT_STRIDE, stride=LATENT_STRIDE, bias=False) for _ in range(cores)
        )
        self.prior_head = nn.Conv2d(hid, 2 * z, k, padding=k // 2)
        self.posterior_head = nn.Conv2d(hid, 2 * z, k, padding=k // 2)
        self.observation = nn.Conv2d(hid, 3, kernel_size=1)
        self.hidden_channels, self.z_channels = hid, z
        self.sigmoid_mean = cfg.mean_activation == "sigmoid"

    def _conditions(self, cores: nn.ModuleList, static: torch.Tensor) -> list[torch.Tensor]:
        return [core.condition(static) for core in cores]

    def _static_g(self, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return torch.cat((broadcast_viewpoint(v.to(r.dtype), r.shape[-2:]), r), dim=1)

    def run(self, v: torch.Tensor, r: torch.Tensor, x: torch.Tensor | None = None) -> GenerationOutput:
        """Unroll the L steps.

        Args:
            v: query viewpoints ``[B,7]``.
            r: scene representation on the latent grid ``[B,C,h,w]``.
            x: query images ``[B,3,H,W]``: latents come from the posterior and the KL is
                computed; ``None``: latents come from the prior (novel-view sampling).
        """
        b, _, h, w = r.shape
        dtype = r.dtype
        static_g = self._static_g(v, r)
        cond_g = self._conditions(self.generation_cores, static_g)
        if x is not None:
            x_blocks = F.pixel_unshuffle(x.to(dtype), LATENT_STRIDE)
            cond_e = self._conditions(self.inference_cores, torch.cat((x_blocks, static_g), dim=1))
        # States start at zero (None): the first step skips the convolutions of all-zero inputs.
        state_g: tuple[torch.Tensor, torch.Tensor] | None = None
        state_e: tuple[torch.Tensor, torch.Tensor] | None = None
        canvas: torch.Tensor | None = None
        kls = []
        n = len(self.generation_cores)
        for step in range(self.steps):
            i = step % n
            h_g = state_g[0] if state_g is not None else None
            if h_g is None:
                p_params = self.prior_head.bias[None, :, None, None].expand(b, -1, h, w)
            else:
                p_params = self.prior_head(h_g)
            p_mu, p_std = _gaussian(p_params)
            if x is not None:
                state_e = self.inference_cores[i](h_g, cond_e[i], state_e)
                q_mu, q_std = _gaussian(self.posterior_head(state_e[0]))
                q = Normal(q_mu, q_std, validate_args=False)
                z = q.rsample()
                kls.append(kl_divergence(q, Normal(p_mu, p_std, validate_args=False)).sum(dim=(1, 2, 3)))
            else:
                z = Normal(p_mu, p_std, validate_args=False).sample()
            state_g = self.generation_cores[i](z.to(dtype), cond_g[i], state_g)
            delta = self.upsamplers[i](state_g[0]).float()  # accumulate in float32 under autocast
            canvas = delta if canvas is None else canvas + delta
        mean = self.observation(canvas).float()
        if self.sigmoid_mean:
            mean = torch.sigmoid(mean)
        if x is None:
            return GenerationOutput(mean=mean, kl=None)
        kl_steps = torch.stack(kls, dim=1)
        return GenerationOutput(mean=mean, kl=kl_steps.sum(dim=1), kl_steps=kl_steps)
