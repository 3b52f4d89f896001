"""``wm align ...``: sim-to-real alignment of frozen encoders with unlabeled target frames.

* ``wm align collect --domain real [--paired-domain sim] --out F.npz``: a frame set of rollouts.
* ``wm align fit --encoder CKPT --source SIM.npz --target REAL.npz --method ot --out DIR``: an
  adapted encoder (a checkpoint directory any ``--encoder`` option loads), with ``run.json`` and
  TensorBoard logs.
* ``wm align measure --encoder DIR --reference CKPT --train SIM.npz --pairs PAIRS.npz``: paired
  feature error, OT distance and state-probe transfer as JSON.

Policy transfer and the whole study (needs agents): ``wm transfer ...``. Torch is imported in the
handlers only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_commands(subparsers: Any) -> None:
    """Register ``wm align`` with the ``wm`` dispatcher."""
    from envs.domain import DOMAIN_CHOICES

    al = subparsers.add_parser("align", help="OT domain alignment of frozen encoders (sim-to-real)")
    sub = al.add_subparsers(dest="align_command", metavar="ACTION", required=True)

    p = sub.add_parser("collect", help="roll out wm/JacoReach-v1 into a frame set (.npz), optionally paired")
    p.add_argument("--domain", default="sim", choices=DOMAIN_CHOICES)
    p.add_argument(
        "--paired-domain",
        default=None,
        choices=DOMAIN_CHOICES,
        help="also render every state in this domain (evaluation pairs only)",
    )
    p.add_argument("--episodes", type=int, default=150)
    p.add_argument("--steps", type=int, default=20, help="frames per episode")
    p.add_argument("--seed", type=int, default=0, help="episode k is reset with seed SEED+k")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--camera", default="moving")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=_collect)

    from worldmodel.align.names import METHODS, MODES, OT_METHODS, SOURCE_LOSSES

    p = sub.add_parser("fit", help="adapt a frozen encoder to unlabeled target frames")
    p.add_argument("--encoder", required=True, help="source encoder checkpoint or run directory")
    p.add_argument("--source", required=True, help="sim frame set (.npz)")
    p.add_argument("--target", required=True, help="unlabeled target frame set (.npz; pairs are dropped)")
    p.add_argument("--method", default="ot", choices=METHODS)
    p.add_argument("--loss", default="sinkhorn", choices=OT_METHODS)
    p.add_argument("--mode", default="adapter", choices=MODES)
    p.add_argument("--source-loss", default="anchor", choices=SOURCE_LOSSES)
    p.add_argument("--source-data", default=None, help="scene dataset for a GQN's own loss (finetune)")
    p.add_argument("--weight", type=float, default=1.0, help="lambda of the alignment term")
    p.add_argument("--reg", type=float, default=0.05)
    p.add_argument("--reg-m", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=_fit)

    p = sub.add_parser(
        "perception",
        help="train the supervised state encoder (a sim perception module) on rollouts of one domain",
        description="Collect --episodes rollouts of --steps frames in --domain (sim, or randomised for domain "
        "randomisation), train worldmodel.models.state_encoder on them (held-out episodes report the validation "
        "MSE each epoch) and write a checkpoint (safetensors + JSON) with run.json and TensorBoard logs to --out.",
    )
    p.add_argument("--domain", default="sim", choices=DOMAIN_CHOICES)
    p.add_argument("--episodes", type=int, default=4000)
    p.add_argument("--steps", type=int, default=6, help="frames per episode")
    p.add_argument("--val-episodes", type=int, default=300)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=_perception)

    p = sub.add_parser("measure", help="paired error, OT distance, probe transfer of an adapted encoder")
    p.add_argument("--encoder", required=True, help="adapted (or any) encoder applied to target frames")
    p.add_argument("--reference", required=True, help="the sim encoder (applied to the sim twins)")
    p.add_argument("--train", required=True, help="sim frame set of training episodes (fits the probe)")
    p.add_argument("--pairs", required=True, help="held-out target frame set collected with --paired-domain sim")
    p.add_argument("--out", default=None, help="JSON file (default: stdout)")
    p.set_defaults(handler=_measure)


def _collect(args: argparse.Namespace) -> int:
    from worldmodel.align.frames import collect_frames

    fs = collect_frames(
        args.domain,
        args.episodes,
        args.steps,
        args.seed,
        args.size,
        args.camera,
        args.paired_domain,
        env_kwargs={"target_marker": True},
    )
    print(f"wrote {fs.save(args.out)} ({len(fs)} frames)", file=sys.stderr)
    return 0


def _perception(args: argparse.Namespace) -> int:
    from pathlib import Path

    from worldmodel.align.fit import write_history
    from worldmodel.align.frames import FrameSet, collect_frames
    from worldmodel.models.state_encoder import StateEncoderConfig, fit_state_encoder, save_state_encoder
    from worldmodel.run_metadata import write_run_metadata

    out = Path(args.out)
    sets = {}
    for name, episodes, seed in (("train", args.episodes, 500_000), ("val", args.val_episodes, 600_000)):
        path = out / f"frames_{name}.npz"
        if not path.is_file():
            collect_frames(
                args.domain,
                episodes,
                args.steps,
                seed + 10_000 * args.seed,
                args.size,
                env_kwargs={"target_marker": True},
            ).save(path)
        sets[name] = FrameSet.load(path)
    config = StateEncoderConfig(image_size=args.size, epochs=args.epochs, seed=args.seed)
    model, history = fit_state_encoder(sets["train"], config, val=sets["val"])
    save_state_encoder(model, out / "checkpoint", extra={"domain": args.domain, "history": history})
    write_run_metadata(out, config, args.seed, extra={"domain": args.domain, "episodes": args.episodes})
    write_history(str(out / "tb"), history, prefix="perception", step_key="epoch")
    print(f"wrote {out / 'checkpoint'} (validation MSE {history[-1]['val_mse']:.3f})", file=sys.stderr)
    return 0


def _fit(args: argparse.Namespace) -> int:
    from worldmodel.align.encoder import save_aligned
    from worldmodel.align.fit import AlignConfig, fit_alignment, write_history
    from worldmodel.align.frames import FrameSet
    from worldmodel.encoders import load_encoder
    from worldmodel.run_metadata import write_run_metadata

    if args.method == "joint-ot":
        print("wm align fit: joint-ot needs a policy; use `wm transfer study` (agents)", file=sys.stderr)
        return 2
    config = AlignConfig(
        method=args.method,
        loss=args.loss,
        mode=args.mode,
        source_loss=args.source_loss,
        weight=args.weight,
        reg=args.reg,
        reg_m=args.reg_m,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
    )
    base = load_encoder(args.encoder)
    adapted, history = fit_alignment(
        base, FrameSet.load(args.source), FrameSet.load(args.target), config, source_data=args.source_data
    )
    model = adapted.model
    state = model.base.state_dict() if args.mode == "finetune" and args.method not in ("none", "colour") else None
    from dataclasses import asdict

    save_aligned(
        args.out,
        args.encoder,
        args.method,
        asdict(config),
        adapter=model.adapter,
        colour_map=model.colour_map,
        encoder_state=state,
    )
    write_run_metadata(args.out, config, args.seed, extra={"source": args.source, "target": args.target})
    write_history(f"{args.out}/tb", history)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _measure(args: argparse.Namespace) -> int:
    from worldmodel.align.frames import FrameSet
    from worldmodel.align.measures import encoder_measures
    from worldmodel.atomic import atomic_write_json
    from worldmodel.encoders import load_encoder

    result = encoder_measures(
        load_encoder(args.encoder), load_encoder(args.reference), FrameSet.load(args.train), FrameSet.load(args.pairs)
    )
    if args.out:
        atomic_write_json(args.out, result)
    else:
        print(json.dumps(result, indent=2))
    return 0
