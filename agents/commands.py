"""``wm agent train|compare|report`` and ``wm demo``: command-line front ends of :mod:`agents`.

Handlers import torch and Stable-Baselines3 only when they run, so ``wm --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.config import (
    AGENT_OBS_MODES,
    AGGREGATES,
    ALGOS,
    VEC_ENVS,
    CompareConfig,
    TrainConfig,
)

_TRAIN_DEFAULTS = TrainConfig()
_COMPARE_DEFAULTS = CompareConfig()


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``wm agent {train,compare,report}`` and ``wm demo``."""
    agent = subparsers.add_parser("agent", help="SB3 agents on pixels, a frozen representation or the state")
    sub = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)

    p = sub.add_parser(
        "train",
        help="train one agent (TensorBoard, periodic evaluation, checkpoints, run metadata)",
        description="Train one SB3 agent. Outputs in --out: config.json, run.json, evaluations.csv, tb/, model.zip, done.json. "
        "model.zip is SB3's zip format and contains pickled objects: load only models you produced yourself.",
    )
    p.add_argument("--env", default=_TRAIN_DEFAULTS.env_id, help=f"Gymnasium env id (default {_TRAIN_DEFAULTS.env_id})")
    p.add_argument("--camera", default=None, help="camera mode: fixed, moving or random (default: the env's)")
    p.add_argument("--obs", required=True, choices=AGENT_OBS_MODES, help="what the agent observes")
    p.add_argument("--encoder", default=None, help="frozen encoder checkpoint (or run) directory, for --obs repr")
    p.add_argument("--algo", default=_TRAIN_DEFAULTS.algo, choices=ALGOS, help="SB3 algorithm (default ppo)")
    p.add_argument("--steps", type=int, default=_TRAIN_DEFAULTS.steps, help=f"env steps (default {_TRAIN_DEFAULTS.steps})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run directory")
    _add_env_options(p)
    p.add_argument("--vec-env", default="dummy", choices=VEC_ENVS, help="dummy (one process) or subproc (one per env)")
    p.add_argument("--eval-seed", type=int, default=_TRAIN_DEFAULTS.eval_seed,
                   help=f"seed of the evaluation episodes, the same at every evaluation (default {_TRAIN_DEFAULTS.eval_seed})")
    p.add_argument("--checkpoint-freq", type=int, default=_TRAIN_DEFAULTS.checkpoint_freq,
                   help=f"save an SB3 checkpoint every N env steps (default {_TRAIN_DEFAULTS.checkpoint_freq}; 0: final model only)")
    p.add_argument("--append-viewpoint", action="store_true", help="repr: append the 7-d camera viewpoint to the features")
    p.add_argument("--context-views", type=int, default=1, help="repr: aggregate the last K views of an episode (default 1)")
    p.add_argument("--aggregate", default="sum", choices=AGGREGATES, help="repr: how K views are combined (default sum, as GQN)")
    p.add_argument("--device", default="auto", help="torch device of agent and encoder (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--memory-fraction", type=float, default=0.8, help="max fraction of available RAM for replay buffers")
    p.add_argument("--overwrite", action="store_true", help="retrain even if --out holds a finished run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser(
        "compare",
        help="grid of runs (obs modes x seeds) in parallel processes, rliable statistics, report",
        description="Run `wm agent train` for every obs mode and seed (resumable: finished runs are skipped), then write "
        "evaluations.csv, plots, summary.json, report.md and report.html into --out.",
    )
    p.add_argument("--env", default=_COMPARE_DEFAULTS.env_id, help=f"Gymnasium env id (default {_COMPARE_DEFAULTS.env_id})")
    p.add_argument("--camera", default=None, help="camera mode: fixed, moving or random (default: the env's)")
    p.add_argument("--obs", nargs="+", default=list(AGENT_OBS_MODES), choices=AGENT_OBS_MODES, help="obs modes (default: all three)")
    p.add_argument("--seeds", type=int, default=_COMPARE_DEFAULTS.seeds, help=f"seeds per mode (default {_COMPARE_DEFAULTS.seeds})")
    p.add_argument("--seed0", type=int, default=0, help="first seed")
    p.add_argument("--steps", type=int, default=_COMPARE_DEFAULTS.steps, help=f"env steps per run (default {_COMPARE_DEFAULTS.steps})")
    p.add_argument("--encoder", default=None, help="frozen encoder checkpoint for the repr runs")
    p.add_argument("--algo", default="ppo", choices=ALGOS)
    p.add_argument("--out", required=True, help="comparison directory")
    _add_env_options(p)
    p.add_argument("--jobs", type=int, default=None, help="runs in parallel (default: one per core)")
    p.add_argument("--threads-per-run", type=int, default=1, help="torch threads of each run (default 1)")
    _add_report_options(p)
    p.add_argument("--dry-run", action="store_true", help="print the run commands and exit")
    p.set_defaults(handler=_cmd_compare)

    p = sub.add_parser("report", help="rewrite the report of a comparison from its finished runs")
    p.add_argument("--out", required=True, help="comparison directory (holds compare_config.json)")
    _add_report_options(p)
    p.set_defaults(handler=_cmd_report)

    p = subparsers.add_parser(
        "demo",
        help="the main job: dataset -> GQN -> frozen encoder -> PPO on pixels/repr/state -> report",
        description="Collect a small Jaco moving-camera dataset, train a small GQN, freeze it, train PPO on pixels, the "
        "representation and the state, compare them and write the report. --preset small fits a 2-core CPU in ~20 "
        "minutes; --preset full is the GPU-scale version of the same study. Rerunning resumes finished stages.",
    )
    p.add_argument("--preset", default="small", choices=("small", "full"), help="study size (default small)")
    p.add_argument("--out", default="wm_out/demo", help="output directory (default ./wm_out/demo)")
    p.add_argument("--jobs", type=int, default=None, help="agent runs in parallel (default: one per core)")
    p.add_argument("--device", default=None, help="device for GQN training (default: the preset's)")
    p.set_defaults(handler=_cmd_demo)


def _add_env_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=None, help="image size for pixels/repr (default: encoder input size, else env default)")
    p.add_argument("--n-envs", type=int, default=None, help="parallel training envs (default: per algo/obs mode)")
    p.add_argument("--eval-freq", type=int, default=_TRAIN_DEFAULTS.eval_freq, help=f"evaluate every N env steps (default {_TRAIN_DEFAULTS.eval_freq})")
    p.add_argument("--eval-episodes", type=int, default=_TRAIN_DEFAULTS.eval_episodes, help="episodes per evaluation (default 5)")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="SB3 hyperparameter override, VALUE as JSON when it parses (repeatable)")
    p.add_argument("--env-kwarg", action="append", default=[], metavar="KEY=VALUE", help="extra gymnasium.make argument (repeatable)")


def _add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=float, default=0.9, help="headline: fraction of the state agent's final return (default 0.9)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--reference-return", type=float, default=None, help="return that normalises to 1 (default: state agent's final IQM)")


def _cmd_train(args: argparse.Namespace) -> int:
    from agents.train import parse_overrides, train_agent

    config = TrainConfig(
        env_id=args.env,
        obs=args.obs,
        algo=args.algo,
        steps=args.steps,
        seed=args.seed,
        out=args.out,
        camera=args.camera,
        size=args.size,
        encoder=args.encoder,
        append_viewpoint=args.append_viewpoint,
        context_views=args.context_views,
        aggregate=args.aggregate,
        n_envs=args.n_envs,
        vec_env=args.vec_env,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
        checkpoint_freq=args.checkpoint_freq,
        hyperparams=parse_overrides(args.hp, "--hp"),
        env_kwargs=parse_overrides(args.env_kwarg, "--env-kwarg"),
        device=args.device,
        threads=args.threads,
        memory_fraction=args.memory_fraction,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    train_agent(config)
    return 0


def _compare_config(args: argparse.Namespace) -> CompareConfig:
    from agents.train import parse_overrides

    parse_overrides(args.hp, "--hp")  # validate early
    parse_overrides(args.env_kwarg, "--env-kwarg")
    extra: list[str] = []
    for item in args.hp:
        extra += ["--hp", item]
    for item in args.env_kwarg:
        extra += ["--env-kwarg", item]
    return CompareConfig(
        env_id=args.env,
        camera=args.camera,
        obs_modes=tuple(args.obs),
        seeds=args.seeds,
        seed0=args.seed0,
        steps=args.steps,
        algo=args.algo,
        encoder=str(Path(args.encoder).resolve()) if args.encoder else None,
        out=args.out,
        size=args.size,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        n_envs=args.n_envs,
        jobs=args.jobs,
        threads_per_run=args.threads_per_run,
        train_args=tuple(extra),
        threshold=args.threshold,
        bootstrap_reps=args.reps,
    ).validate()


def _print_outputs(files: dict, out: str) -> None:
    print(f"report: {files['html']}  (Markdown: {files['markdown']})")
    print(f"every evaluation: {files['csv']}; numbers: {files['summary']}")
    print(f"TensorBoard: tensorboard --logdir {Path(out) / 'runs'}")


def _cmd_compare(args: argparse.Namespace) -> int:
    from agents.compare import compare, plan_grid

    cfg = _compare_config(args)
    if args.dry_run:
        for run in plan_grid(cfg):
            print(" ".join(run.command))
        return 0
    result, files = compare(cfg, reference=args.reference_return)
    _print_outputs(files, cfg.out)
    if result.failed:
        print(f"wm: {len(result.failed)} run(s) failed: {', '.join(result.failed)} (see their train.log); the report uses the finished runs")
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from agents.artifacts import read_json
    from agents.compare import GRID_FILE, make_report

    path = Path(args.out) / GRID_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --out must be a directory written by `wm agent compare`")
    stored = read_json(path)["config"]
    known = {f.name for f in fields(CompareConfig)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in stored.items() if k in known}
    values.update(out=args.out, threshold=args.threshold, bootstrap_reps=args.reps)
    files = make_report(CompareConfig(**values).validate(), reference=args.reference_return)
    _print_outputs(files, args.out)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from agents.demo import run_demo

    return run_demo(preset=args.preset, out=args.out, jobs=args.jobs, device=args.device)
