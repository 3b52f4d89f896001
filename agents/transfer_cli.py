"""``wm transfer ...``: policies across visual domains (needs agents; encoder-level tools: ``wm align``).

* ``wm transfer dagger --encoder CKPT --out RUN [--seed S]``: a sim policy on the frozen encoder,
  trained by DAgger from the scripted expert (:mod:`agents.imitation`).
* ``wm transfer eval --run RUN --encoder CKPT --domain real``: play a finished policy in another
  domain through an (adapted) encoder; normalised by the expert reference.
* ``wm transfer study --out DIR --encoder CKPT --agents DIR ...``: the whole study
  (:mod:`agents.transfer_study`): every method on both target domains, report with figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_commands(subparsers: Any) -> None:
    """Register ``wm transfer``."""
    from envs.domain import DOMAIN_CHOICES

    tr = subparsers.add_parser("transfer", help="sim-to-real policy transfer through adapted encoders")
    sub = tr.add_subparsers(dest="transfer_command", metavar="ACTION", required=True)

    p = sub.add_parser("dagger", help="train a sim policy on a frozen encoder by DAgger from the expert")
    p.add_argument("--encoder", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--steps-per-iteration", type=int, default=3000)
    p.add_argument("--context-views", type=int, default=1)
    p.set_defaults(handler=_dagger)

    p = sub.add_parser("eval", help="play a finished repr policy in a domain through an encoder")
    p.add_argument("--run", required=True, help="finished run directory (wm agent train --obs repr, or dagger)")
    p.add_argument("--encoder", required=True, help="encoder the policy observes (adapted or the original)")
    p.add_argument("--domain", default="real", choices=DOMAIN_CHOICES)
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--out", default=None, help="JSON file (default: stdout)")
    p.set_defaults(handler=_eval)

    from agents.transfer_study import METHOD_SPECS, TARGET_DOMAINS

    p = sub.add_parser("study", help="every alignment method on both target domains; report.md/html, figures")
    p.add_argument("--out", required=True)
    p.add_argument("--encoder", required=True, help="sim encoder")
    p.add_argument("--agents", required=True, help="directory of the sim agents' runs s0, s1, ...")
    p.add_argument("--encoder-randomised", default=None, help="encoder trained on randomised domains")
    p.add_argument("--agents-randomised", default=None, help="its agents' runs s0, s1, ...")
    p.add_argument("--source-data", default=None, help="GQN scene dataset (finetune's learner loss)")
    p.add_argument(
        "--stages", nargs="+", default=["encoders", "policy", "report"], choices=["encoders", "policy", "report"]
    )
    p.add_argument("--methods", nargs="+", default=list(METHOD_SPECS), choices=list(METHOD_SPECS))
    p.add_argument("--domains", nargs="+", default=list(TARGET_DOMAINS), choices=DOMAIN_CHOICES)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=150, help="optimiser steps per fit")
    p.add_argument("--policy-episodes", type=int, default=16)
    p.set_defaults(handler=_study)


def _dagger(args: argparse.Namespace) -> int:
    from agents.imitation import DaggerConfig, train_dagger

    cfg = DaggerConfig(
        encoder=args.encoder,
        out=args.out,
        seed=args.seed,
        iterations=args.iterations,
        steps_per_iteration=args.steps_per_iteration,
        context_views=args.context_views,
    )
    print(json.dumps(train_dagger(cfg)))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import numpy as np

    from agents.reference import evaluation_seeds, measure_reference
    from agents.transfer import evaluate_transfer
    from worldmodel.atomic import atomic_write_json

    result = evaluate_transfer(args.run, args.encoder, domain=args.domain, episodes=args.episodes)
    ref = measure_reference("wm/JacoReach-v1", {}, evaluation_seeds(result["eval_seed"], args.episodes))
    result["normalised_score"] = float(np.mean(ref.normalise(np.asarray(result["returns"]))))
    if args.out:
        atomic_write_json(args.out, result)
    else:
        print(json.dumps(result, indent=2))
    return 0


def _study(args: argparse.Namespace) -> int:
    from agents.transfer_study import StudyConfig, run_transfer_study

    cfg = StudyConfig(
        out=args.out,
        encoder=args.encoder,
        agents=args.agents,
        encoder_randomised=args.encoder_randomised,
        agents_randomised=args.agents_randomised,
        source_data=args.source_data,
        domains=tuple(args.domains),
        methods=tuple(args.methods),
        seeds=args.seeds,
        steps=args.steps,
        policy_episodes=args.policy_episodes,
    )
    run_transfer_study(cfg, tuple(args.stages))
    print(f"wrote {args.out}/report.md", file=sys.stderr)
    return 0
