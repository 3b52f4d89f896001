"""Diagnose the GQN's first training steps on one fixed random batch (issue 14).

Prints the loss terms of the first Adam steps of the paper config (at ``--size`` px) for a few
variants of the parameterisation, and which part of the model one Adam step makes the KL jump:
the first step of Adam moves every weight by about ``lr`` in the direction of its gradient's
sign, so the step is applied to one parameter group at a time.

    python scripts/gqn_first_steps.py --size 32 --steps 3
    python scripts/gqn_first_steps.py --size 64 --variants main port-like --no-attribution --torch-gqn ~/torch-gqn

Sigma is the training start's 2.0 for both models (torch-gqn's forward takes it as an argument).
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Callable

import torch

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


#: The model's form before issue 14 (softplus std, the query image as 48 channels of pixel blocks);
#: "main" and the initialisation variants below start from it, so the tables in docs/benchmarks.md
#: stay reproducible after the defaults changed.
BEFORE = {"std_activation": "softplus", "query_input": "space_to_depth"}
#: Variants that are config options of the model (the others patch its initialisation below).
VARIANT_OPTIONS = {
    "main": BEFORE,
    "exp std": {**BEFORE, "std_activation": "exp"},
    "query conv": {**BEFORE, "query_input": "conv"},
    "port-like": {"std_activation": "exp", "query_input": "conv"},  # the defaults since issue 14
}
VARIANTS = ("main", "exp std", "query conv", "port-like", "zero heads", "forget bias 0", "joint init")


def _batch(size: int, b: int = 4, k: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "context_frames": torch.rand(b, k, 3, size, size, generator=g),
        "context_viewpoints": torch.randn(b, k, 7, generator=g),
        "query_frame": torch.rand(b, 3, size, size, generator=g),
        "query_viewpoint": torch.randn(b, 7, generator=g),
    }


def _model(size: int, variant: str) -> GQN:
    form = VARIANT_OPTIONS.get(variant, BEFORE)
    values = dict(PRESETS["paper"]["model"], position_scale=1.0, image_size=size, **form)
    torch.manual_seed(0)
    model = GQN(GQNConfig(**values))
    if variant == "zero heads":
        for head in (model.generator.prior_head, model.generator.posterior_head):
            torch.nn.init.zeros_(head.weight)
    if variant == "joint init":
        # one conv over the concatenated [input, hidden, condition] as in torch-gqn: weight bound
        # 1/sqrt(total fan-in) for both halves of the split gate conv, instead of each its own
        for cell in [*model.generator.inference_cores, *model.generator.generation_cores]:
            convs = [m for m in cell.modules() if isinstance(m, torch.nn.Conv2d)]
            fan_in = sum(c.weight[0].numel() for c in convs)
            with torch.no_grad():
                for c in convs:
                    c.weight.uniform_(-(fan_in**-0.5), fan_in**-0.5)
    if variant == "forget bias 0":
        for cell in [*model.generator.inference_cores, *model.generator.generation_cores]:
            with torch.no_grad():
                cell.condition.bias.zero_()
    return model


def run_variant(size: int, variant: str, steps: int, lr: float) -> list[dict[str, float]]:
    """Loss terms of the first ``steps`` Adam steps of ``variant`` on the fixed batch."""
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


def run_torch_gqn(path: str, size: int, steps: int, lr: float) -> list[float]:
    """Losses of torch-gqn's own model (a checkout of iShohei220/torch-gqn at ``path``, 64 px) on the same batch."""
    import sys

    if size != 64:
        raise SystemExit("--torch-gqn: torch-gqn's model is built for 64 px images; use --size 64")
    sys.path.insert(0, path)
    from model import GQN as TorchGQN  # the port's module, from the user's checkout (not vendored)

    batch = _batch(size)
    torch.manual_seed(0)
    model = TorchGQN(representation="tower", L=12, shared_core=False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        torch.manual_seed(100 + step)
        elbo = model(
            batch["context_frames"], batch["context_viewpoints"], batch["query_viewpoint"], batch["query_frame"], 2.0
        )
        loss = -elbo.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


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
        out[name] = float(moved.loss(batch)["kl"].detach())
    return out


def block_attribution(size: int, lr: float) -> dict[str, float]:
    """KL after the first sign step on the inference cores' condition weights of one input block only.

    The condition input of the old form is ``cat(query pixel blocks (48), v_q (7), r)``; the rows
    for the recurrent weights, the gate biases and the canvas downsamplers complete the picture.
    """
    model, batch = _model(size, "main"), _batch(size)
    torch.manual_seed(100)
    model.loss(batch)["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    v = model.config.viewpoint_dim
    blocks = {"query pixels": slice(0, 48), "viewpoint": slice(48, 48 + v), "r": slice(48 + v, None)}

    def kl_after(step_of: Callable[[str, torch.Tensor], torch.Tensor | None]) -> float:
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in moved.named_parameters():
                d = step_of(n, p) if n in grads else None
                if d is not None:
                    p -= lr * d
        torch.manual_seed(101)
        return float(moved.loss(batch)["kl"].detach())

    def block_step(sl: slice) -> Callable[[str, torch.Tensor], torch.Tensor | None]:
        def step_of(n: str, p: torch.Tensor) -> torch.Tensor | None:
            if "inference_cores" not in n or not n.endswith("condition.weight"):
                return None
            d = torch.zeros_like(p)
            d[:, sl] = torch.sign(grads[n][:, sl])
            return d

        return step_of

    def whole(match: Callable[[str], bool]) -> Callable[[str, torch.Tensor], torch.Tensor | None]:
        return lambda n, p: torch.sign(grads[n]) if match(n) else None

    out = {f"condition weights of {name}": kl_after(block_step(sl)) for name, sl in blocks.items()}
    out["recurrent weights"] = kl_after(whole(lambda n: "inference_cores" in n and "recurrent" in n))
    out["gate biases"] = kl_after(whole(lambda n: "inference_cores" in n and n.endswith("condition.bias")))
    out["canvas downsamplers"] = kl_after(whole(lambda n: "canvas_downsamplers" in n))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--no-attribution", action="store_true", help="skip the per-group sign-step attribution")
    parser.add_argument("--torch-gqn", metavar="DIR", help="also run torch-gqn's model from this checkout (64 px)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for variant in args.variants:
        rows = run_variant(args.size, variant, args.steps, args.lr)
        kls = ", ".join(f"{r['kl']:.1f}" for r in rows)
        losses = ", ".join(f"{r['loss']:.0f}" for r in rows)
        print(f"{variant:14s} KL per step: {kls}   loss: {losses}", flush=True)
    if args.torch_gqn:
        losses = run_torch_gqn(args.torch_gqn, args.size, args.steps, args.lr)
        print(f"{'torch-gqn':14s} loss: " + ", ".join(f"{x:.0f}" for x in losses), flush=True)
    if args.no_attribution:
        return
    for name, kl in attribution(args.size, args.lr).items():
        print(f"one sign step on {name:18s}: KL {kl:.1f}" + ("" if math.isfinite(kl) else " (non-finite)"), flush=True)
    for name, kl in block_attribution(args.size, args.lr).items():
        print(f"inference cores, {name:30s}: KL {kl:.1f}", flush=True)


if __name__ == "__main__":
    main()
