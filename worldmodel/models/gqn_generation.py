"""GQN generation network: a conditional DRAW-like VAE with an autoregressive latent over L steps.

At every step l = 1..L (state on the H/4 x W/4 latent grid):

* prior      pi(z_l | v_q, r, z_<l)    = N(head_pi(h^g_{l-1}))
* inference  h^e_l = C^e(h^g_{l-1}, u_{l-1}; x_q, v_q, r, h^e_{l-1}),  q(z_l | x_q, v_q, r, z_<l) = N(head_q(h^e_l))
* generator  h^g_l = C^g(z_l; v_q, r, h^g_{l-1}),  canvas u_l = u_{l-1} + Delta_l(h^g_l)  (x4 transposed conv)
* output     x ~ N(conv1x1(u_L), sigma^2)  (optionally squashed by a sigmoid, see ``GQNConfig.mean_activation``)

C^e and C^g are Conv-LSTM cores, one per step (unshared, the paper's default) or one for all
steps (shared). The query image enters the inference core as a space-to-depth rearrangement
(lossless, parameter-free) of its 4x4 blocks. The canvas u_{l-1} enters it through a learned
4x4 / stride-4 convolution (the paper's C^e input, as in torch-gqn and tf-gqn;
``GQNConfig.inference_canvas = "none"`` is the first release's form without it, as in wohlert's
port). The output mean and the likelihood are computed in float32 even under bf16 autocast.

Every parameter receives a gradient from the training loss for every L (DDP runs with
``find_unused_parameters=False``): the first step of the unshared cores and the L = 1 shared
core are built without the recurrent weights and canvas inputs that would only ever see zeros,
and with L = 1 the prior head's weight (only its bias sets the first step's prior) is frozen.

Why hand-written: the architecture is the paper's contribution and no maintained library
provides it. Implementation detail of our own: each core's gate convolution over
``cat(dynamic input, h, condition)`` is split into a conv of the per-step inputs and a conv of
the step-independent condition (x_q, v_q, r), which is linear and so computed once per forward
(an exact rewrite of the same convolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
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
        self,
        input_channels: int,
        condition_channels: int,
        hidden_channels: int,
        kernel_size: int,
        recurrent: bool = True,
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


def _gaussian(params: torch.Tensor, exp_std: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` of a head's output: std ``softplus(raw) + 1e-4``, or ``exp(raw / 2)`` (a log-variance)."""
    mu, raw = params.float().chunk(2, dim=1)
    if exp_std:
        return mu, torch.exp(0.5 * raw.clamp(-30.0, 30.0))
    return mu, F.softplus(raw) + 1e-4


def gaussian_kl(q_mu: torch.Tensor, q_std: torch.Tensor, p_mu: torch.Tensor, p_std: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(q_mu, q_std^2) || N(p_mu, p_std^2)).

    Written out rather than ``torch.distributions.kl_divergence``, whose dispatch on the
    distribution types breaks ``torch.compile`` graphs inside the step loop.
    """
    var_ratio = (q_std / p_std).pow(2)
    t1 = ((q_mu - p_mu) / p_std).pow(2)
    return 0.5 * (var_ratio + t1 - 1.0 - var_ratio.log())


class GenerationNetwork(nn.Module):
    """Prior, posterior, Conv-LSTM cores and canvas of the GQN generator."""

    def __init__(self, config: GQNConfig) -> None:
        super().__init__()
        cfg = config
        self.steps = cfg.generation_steps
        hid, z, k = cfg.hidden_channels, cfg.z_channels, cfg.kernel_size
        # the query image for C^e: its 4x4 pixel blocks (48 channels) or a learned 4x4/4 conv of it (3 channels)
        self.query_downsampler = (
            nn.Conv2d(3, 3, kernel_size=LATENT_STRIDE, stride=LATENT_STRIDE, bias=False)
            if cfg.query_input == "conv"
            else None
        )
        x_channels = 3 * LATENT_STRIDE**2 if self.query_downsampler is None else 3
        self.exp_std = cfg.std_activation == "exp"
        cond_g = cfg.viewpoint_dim + cfg.r_channels
        cond_e = x_channels + cond_g
        cores = 1 if cfg.shared_core else cfg.generation_steps
        self.canvas_input = cfg.inference_canvas == "downsampled"
        # A core runs a step after the first (with a state, h^g and a canvas to see) unless it is the
        # first unshared core or the only step: those only ever see zeros besides their condition.
        later = [i > 0 or (cfg.shared_core and cfg.generation_steps > 1) for i in range(cores)]
        e_input = hid * (2 if self.canvas_input else 1)
        self.inference_cores = nn.ModuleList(
            ConvLSTMCell(e_input, cond_e, hid, k, recurrent=later[i]) for i in range(cores)
        )
        # u_{l-1} -> the latent grid for C^e (one per core that sees a canvas; Identity keeps indices).
        self.canvas_downsamplers = nn.ModuleList(
            nn.Conv2d(hid, hid, kernel_size=LATENT_STRIDE, stride=LATENT_STRIDE, bias=False)
            if self.canvas_input and later[i]
            else nn.Identity()
            for i in range(cores)
        )
        self.generation_cores = nn.ModuleList(ConvLSTMCell(z, cond_g, hid, k) for _ in range(cores))
        self.upsamplers = nn.ModuleList(
            nn.ConvTranspose2d(hid, hid, kernel_size=LATENT_STRIDE, stride=LATENT_STRIDE, bias=False)
            for _ in range(cores)
        )
        self.prior_head = nn.Conv2d(hid, 2 * z, k, padding=k // 2)
        self.posterior_head = nn.Conv2d(hid, 2 * z, k, padding=k // 2)
        if cfg.generation_steps == 1:  # the only prior is the first step's, set by the bias alone
            self.prior_head.weight.requires_grad_(False)
        self.observation = nn.Conv2d(hid, 3, kernel_size=1)
        self.hidden_channels, self.z_channels = hid, z
        self.sigmoid_mean = cfg.mean_activation == "sigmoid"

    @staticmethod
    def _conditions(cores: nn.ModuleList, static: torch.Tensor) -> list[torch.Tensor]:
        # One convolution per core. Stacking the L cores' weights into one convolution was measured
        # 1.2x slower per paper-config step on a 2-core CPU (the stacked weights and their gradient
        # are copied every step: ~350 MB at L = 12); see docs/benchmarks.md.
        return [core.condition(static) for core in cores]

    def _static_g(self, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return torch.cat((broadcast_viewpoint(v.to(r.dtype), r.shape[-2:], like=r), r), dim=1)

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
            x = x.to(dtype)
            x_blocks = (
                F.pixel_unshuffle(x, LATENT_STRIDE) if self.query_downsampler is None else self.query_downsampler(x)
            )
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
            p_mu, p_std = _gaussian(p_params, self.exp_std)
            if x is not None:
                e_in = h_g
                if self.canvas_input and canvas is not None:
                    e_in = torch.cat((h_g, self.canvas_downsamplers[i](canvas.to(dtype))), dim=1)
                state_e = self.inference_cores[i](e_in, cond_e[i], state_e)
                q_mu, q_std = _gaussian(self.posterior_head(state_e[0]), self.exp_std)
                z = q_mu + q_std * torch.randn_like(q_std)  # reparameterised sample
                kls.append(gaussian_kl(q_mu, q_std, p_mu, p_std).sum(dim=(1, 2, 3)))
            else:
                z = p_mu + p_std * torch.randn_like(p_std)
            state_g = self.generation_cores[i](z.to(dtype), cond_g[i], state_g)
            delta = self.upsamplers[i](state_g[0]).float()  # accumulate in float32 under autocast
            canvas = delta if canvas is None else canvas + delta
        # The likelihood's mean in float32 also under bf16 autocast (docs/training.md).
        with torch.autocast(device_type=canvas.device.type, enabled=False):
            mean = self.observation(canvas.to(self.observation.weight.dtype)).float()
        if self.sigmoid_mean:
            mean = torch.sigmoid(mean)
        if x is None:
            return GenerationOutput(mean=mean, kl=None)
        kl_steps = torch.stack(kls, dim=1)
        return GenerationOutput(mean=mean, kl=kl_steps.sum(dim=1), kl_steps=kl_steps)
