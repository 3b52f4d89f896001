"""Diagnose the GQN's first training steps on one fixed random batch (issue 14).

Prints the loss terms of the first Adam steps of the paper config (at ``--size`` px) for a few
variants of the parameterisation, and which part of the model one Adam step makes the KL jump:
the first step of Adam moves every weight by about ``lr`` in the direction of its gradient's
sign, so the step is applied to one parameter group at a time.

    python scripts/gqn_first_steps.py --size 32 --steps 3
"""

from __future__ import annotations

import argparse
import copy
import math

import torch

from worldmodel.models import gqn_generation
from worldmodel.models.gqn import GQN
from worldmodel.models.gqn_config import PRESETS, GQNConfig

GROUPS = {
    "psi": lambda n: n.startswith("psi."),
    "inference cores": lambda n: "inference_cores" in n or "canvas_downsamplers" in n,
    "generation cores": lambda n: "generation_cores" in n,
    "canvas upsamplers": lambda n: "upsamplers" in n,
    "prior head": lambda n: "prior_head" in n,
    "posterior head": lambda n: "posterior_head" in n,
    "output conv": lambda n: "observation" in n,
}


def _batch(size: int, b: int = 4, k: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "context_frames": torch.rand(b, k, 3, size, size, generator=g),
        "context_viewpoints": torch.randn(b, k, 7, generator=g),
        "query_frame": torch.rand(b, 3, size, size, generator=g),
        "query_viewpoint": torch.randn(b, 7, generator=g),
    }


def _model(size: int, variant: str) -> GQN:
    values = dict(PRESETS["paper"]["model"], position_scale=1.0, image_size=size)
    torch.manual_seed(0)
    model = GQN(GQNConfig(**values))
    if variant == "zero heads":
        for head in (model.generator.prior_head, model.generator.posterior_head):
            torch.nn.init.zeros_(head.weight)
    if variant == "forget bias 0":
        for cell in [*model.generator.inference_cores, *model.generator.generation_cores]:
            with torch.no_grad():
                cell.condition.bias.zero_()
    return model


def _exp_std(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, raw = params.float().chunk(2, dim=1)
    return mu, torch.exp(0.5 * raw)


def run_variant(size: int, variant: str, steps: int, lr: float) -> list[dict[str, float]]:
    """Loss terms of the first ``steps`` Adam steps of ``variant`` on the fixed batch."""
    original = gqn_generation._gaussian
    if variant == "exp std":
        gqn_generation._gaussian = _exp_std
    try:
        model, batch = _model(size, variant), _batch(size)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        rows = []
        for step in range(steps):
            torch.manual_seed(100 + step)
            metrics = model.loss(batch)
            opt.zero_grad()
            metrics["loss"].backward()
            opt.step()
            rows.append({k: float(metrics[k].detach()) for k in ("loss", "nll", "kl")})
        return rows
    finally:
        gqn_generation._gaussian = original


def attribution(size: int, lr: float) -> dict[str, float]:
    """KL after Adam's first step (a sign step of size lr) applied to one parameter group only."""
    model, batch = _model(size, "main"), _batch(size)
    torch.manual_seed(100)
    model.loss(batch)["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    out = {}
    for name, selected in GROUPS.items():
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in moved.named_parameters():
                if selected(n) and n in grads:
                    p -= lr * torch.sign(grads[n])
        torch.manual_seed(101)
        out[name] = float(moved.loss(batch)["kl"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for variant in ("main", "exp std", "zero heads", "forget bias 0"):
        rows = run_variant(args.size, variant, args.steps, args.lr)
        kls = ", ".join(f"{r['kl']:.1f}" for r in rows)
        losses = ", ".join(f"{r['loss']:.0f}" for r in rows)
        print(f"{variant:14s} KL per step: {kls}   loss: {losses}", flush=True)
    for name, kl in attribution(args.size, args.lr).items():
        print(f"one sign step on {name:18s}: KL {kl:.1f}" + ("" if math.isfinite(kl) else " (non-finite)"), flush=True)


if __name__ == "__main__":
    main()
