"""``wm agent train|compare|aggregate|report`` and ``wm demo``: command-line front ends of :mod:`agents`.

Handlers import torch and Stable-Baselines3 only when they run, so ``wm --help`` stays fast.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from agents.config import (
    AGENT_OBS_MODES,
    AGGREGATES,
    ALGOS,
    DEFAULT_COMPARE_OBS,
    VEC_ENVS,
    ArmSpec,
    CompareConfig,
    TrainConfig,
    arms_for_obs_modes,
)

_TRAIN_DEFAULTS = TrainConfig()
_COMPARE_DEFAULTS = CompareConfig()


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``wm agent {train,compare,aggregate,report}`` and ``wm demo``."""
    agent = subparsers.add_parser("agent", help="SB3 agents on pixels, a frozen representation or the state")
    sub = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)

    p = sub.add_parser(
        "train",
        help="train one agent (TensorBoard, evaluation on fixed seeds, resumable checkpoints, run metadata)",
        description="Train one SB3 agent. Outputs in --out: config.json, run.json, evaluations.csv, tb/, checkpoints/, "
        "model.zip (+ vecnormalize.json), done.json. A killed run resumes from its latest checkpoint when rerun with "
        "the same settings. model.zip is SB3's zip format and contains pickled objects: load only models you produced "
        "yourself.",
    )
    p.add_argument("--env", default=_TRAIN_DEFAULTS.env_id, help=f"Gymnasium env id (default {_TRAIN_DEFAULTS.env_id})")
    p.add_argument("--camera", default=None, help="camera mode: fixed, moving or random (default: the env's)")
    p.add_argument("--obs", required=True, choices=AGENT_OBS_MODES, help="what the agent observes")
    p.add_argument(
        "--arm", default=None, help="comparison group recorded in config.json/done.json ([a-z0-9+_-]+; default: --obs)"
    )
    p.add_argument("--encoder", default=None, help="frozen encoder checkpoint (or run) directory, for --obs repr")
    p.add_argument("--algo", default=_TRAIN_DEFAULTS.algo, choices=ALGOS, help="SB3 algorithm (default ppo)")
    p.add_argument(
        "--steps", type=int, default=_TRAIN_DEFAULTS.steps, help=f"env steps (default {_TRAIN_DEFAULTS.steps})"
    )
    p.add_argument("--seed", type=int, default=0, help="agent seed; training env i is seeded seed*1000+i (default 0)")
    p.add_argument("--out", required=True, help="run directory")
    _add_env_options(p)
    p.add_argument(
        "--vec-env",
        default=_TRAIN_DEFAULTS.vec_env,
        choices=VEC_ENVS,
        help="dummy (one process), subproc (one per env) or auto (default: subproc for the rendering modes when "
        "there is a CPU per env plus one, else dummy)",
    )
    p.add_argument(
        "--eval-seed",
        type=int,
        default=_TRAIN_DEFAULTS.eval_seed,
        help="evaluation episode k is reset with seed EVAL_SEED+k, at every evaluation "
        f"(default {_TRAIN_DEFAULTS.eval_seed})",
    )
    p.add_argument(
        "--checkpoint-freq",
        type=int,
        default=_TRAIN_DEFAULTS.checkpoint_freq,
        help=f"save a resumable checkpoint every N env steps (default {_TRAIN_DEFAULTS.checkpoint_freq}; 0: none)",
    )
    p.add_argument(
        "--no-resume", action="store_true", help="start an unfinished run from scratch instead of resuming it"
    )
    p.add_argument(
        "--no-replay-buffer-checkpoint",
        action="store_true",
        help="off-policy: do not save the replay buffer with checkpoints (a resumed run starts with an empty one)",
    )
    p.add_argument(
        "--frame-stack",
        type=int,
        default=_TRAIN_DEFAULTS.frame_stack,
        help="pixels, pixels+viewpoint: stack the last K observations (default 1)",
    )
    p.add_argument("--normalize", action="store_true", help="repr, state: normalise observations (VecNormalize)")
    p.add_argument(
        "--normalize-reward", action="store_true", help="normalise rewards by the running return std (VecNormalize)"
    )
    p.add_argument(
        "--append-viewpoint", action="store_true", help="repr: append the 7-d camera viewpoint to the features"
    )
    p.add_argument(
        "--context-views", type=int, default=1, help="repr: aggregate the last K views of an episode (default 1)"
    )
    p.add_argument(
        "--aggregate", default="sum", choices=AGGREGATES, help="repr: how K views are combined (default sum, as GQN)"
    )
    p.add_argument("--device", default="auto", help="torch device of agent and encoder (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--memory-fraction", type=float, default=0.8, help="max fraction of available RAM for replay buffers"
    )
    p.add_argument("--overwrite", action="store_true", help="retrain from scratch even if --out holds a finished run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser(
        "compare",
        help="grid of runs (arms x seeds) in parallel processes, rliable statistics, report",
        description="Run `wm agent train` for every arm and seed into --out/runs/<arm>_s<seed> (resumable: finished "
        "runs are skipped, unfinished ones relaunched to resume from their checkpoints), measure the "
        "expert/zero-action reference (reference.json), then write evaluations.csv, plots, summary.json, report.md and "
        "report.html into --out. Arms: --obs MODE ... (arms named after the modes; repr uses --encoder) and/or --arm "
        "NAME=OBS[@ENCODER_DIR]. With --shard i/n only that shard of the plan runs and no report is written: run "
        "`wm agent aggregate OUT` after all shards.",
    )
    p.add_argument(
        "--env", default=_COMPARE_DEFAULTS.env_id, help=f"Gymnasium env id (default {_COMPARE_DEFAULTS.env_id})"
    )
    p.add_argument("--camera", default=None, help="camera mode: fixed, moving or random (default: the env's)")
    p.add_argument(
        "--obs",
        nargs="+",
        default=None,
        choices=AGENT_OBS_MODES,
        metavar="MODE",
        help=f"arms named after obs modes, from {', '.join(AGENT_OBS_MODES)} (default without --arm: "
        f"{' '.join(DEFAULT_COMPARE_OBS)})",
    )
    p.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME=OBS[@ENCODER_DIR]",
        help="an arm (repeatable), e.g. repr-niso=repr@runs/niso, repr-untrained=repr@untrained/gqn, "
        "pixels+viewpoint=pixels+viewpoint; repr arms need @ENCODER_DIR",
    )
    p.add_argument(
        "--arm-args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra `wm agent train` arguments of one arm, shell-quoted (repeatable), e.g. "
        "--arm-args 'state=--normalize'; listed in the report as a per-arm difference",
    )
    p.add_argument(
        "--seeds", type=int, default=_COMPARE_DEFAULTS.seeds, help=f"seeds per arm (default {_COMPARE_DEFAULTS.seeds})"
    )
    p.add_argument("--seed0", type=int, default=0, help="first seed")
    p.add_argument(
        "--steps",
        type=int,
        default=_COMPARE_DEFAULTS.steps,
        help=f"env steps per run (default {_COMPARE_DEFAULTS.steps})",
    )
    p.add_argument("--encoder", default=None, help="frozen encoder checkpoint of the 'repr' arm of --obs")
    p.add_argument("--algo", default="ppo", choices=ALGOS)
    p.add_argument("--out", required=True, help="comparison directory")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="image size for image arms (default: encoder input size, else env default)",
    )
    p.add_argument("--n-envs", type=int, default=None, help="parallel training envs (default: per algo/obs mode)")
    p.add_argument(
        "--eval-freq",
        type=int,
        default=_COMPARE_DEFAULTS.eval_freq,
        help=f"evaluate every N env steps (default {_COMPARE_DEFAULTS.eval_freq})",
    )
    p.add_argument(
        "--eval-episodes",
        type=int,
        default=_COMPARE_DEFAULTS.eval_episodes,
        help="episodes per evaluation, the same seeds for every run and the reference "
        f"(default {_COMPARE_DEFAULTS.eval_episodes})",
    )
    p.add_argument(
        "--eval-seed",
        type=int,
        default=_COMPARE_DEFAULTS.eval_seed,
        help=f"first evaluation seed (default {_COMPARE_DEFAULTS.eval_seed}; training envs use seed*1000+i)",
    )
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="SB3 hyperparameter override of every arm (repeatable)",
    )
    p.add_argument(
        "--env-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gymnasium.make argument of every run and of the reference (repeatable)",
    )
    p.add_argument("--jobs", type=int, default=None, help="runs in parallel (default: one per core)")
    p.add_argument("--threads-per-run", type=int, default=1, help="torch threads of each run (default 1)")
    p.add_argument(
        "--checkpoint-freq",
        type=int,
        default=None,
        help="env steps between each run's resumable checkpoints (default: `wm agent train`'s)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only the runs whose index in the plan is I mod N (0 <= I < N; one job-array task each), "
        "then `wm agent aggregate OUT`",
    )
    _add_report_options(p)
    p.add_argument("--dry-run", action="store_true", help="print the run commands (of --shard, if given) and exit")
    p.set_defaults(handler=_cmd_compare)

    p = sub.add_parser(
        "aggregate",
        help="the report over all finished runs of a comparison (e.g. after its shards)",
        description="Measure (once; cached in OUT/reference.json) the expert/zero-action reference, load every "
        "finished run of the plan recorded in OUT/compare_config.json and write the report; planned runs that are "
        "missing are listed in the report's notes.",
    )
    p.add_argument("out", metavar="OUT", help="comparison directory (holds compare_config.json)")
    _add_report_options(p, stored=True)
    p.set_defaults(handler=_cmd_aggregate)

    p = sub.add_parser("report", help="same as `agent aggregate` (kept for older scripts)")
    p.add_argument("--out", required=True, help="comparison directory (holds compare_config.json)")
    _add_report_options(p, stored=True)
    p.set_defaults(handler=_cmd_aggregate)

    p = subparsers.add_parser(
        "demo",
        help="the main job: dataset -> GQN -> frozen encoder -> state probe -> PPO on pixels/repr/state -> report",
        description="Collect a Jaco dataset (orbit cameras, target marker), train a geometry-aware GQN, freeze it, "
        "probe its features for the world state, train PPO on pixels, the representation (and its untrained control) "
        "and the state with a moving camera (and, in the larger presets, with a fixed camera), compare them and write "
        "the reports. --preset small is a smoke test that fits a 2-core CPU in ~20-40 minutes; --preset study is meant "
        "for <= 2 h on a 2-core CPU (resumable: rerun to continue); --preset full is the GPU-scale version of the same "
        "study. Rerunning resumes finished stages.",
    )
    p.add_argument("--preset", default="small", choices=("small", "study", "full"), help="study size (default small)")
    p.add_argument("--out", default="wm_out/demo", help="output directory (default ./wm_out/demo)")
    p.add_argument("--jobs", type=int, default=None, help="agent runs in parallel (default: one per core)")
    p.add_argument("--device", default=None, help="device for GQN training (default: the preset's)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads of the GQN training and the probe (default: torch's, one per core); on a CPU "
        "shared with another job, 1 avoids oversubscription, which can slow the GQN stage several-fold",
    )
    p.set_defaults(handler=_cmd_demo)


def _add_env_options(p: argparse.ArgumentParser) -> None:
    """Options of ``agent train`` about the env, evaluation and hyperparameters."""
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="image size for the image modes and repr (default: encoder input size, else env default)",
    )
    p.add_argument("--n-envs", type=int, default=None, help="parallel training envs (default: per algo/obs mode)")
    p.add_argument(
        "--eval-freq",
        type=int,
        default=_TRAIN_DEFAULTS.eval_freq,
        help=f"evaluate every N env steps (default {_TRAIN_DEFAULTS.eval_freq})",
    )
    p.add_argument(
        "--eval-episodes",
        type=int,
        default=_TRAIN_DEFAULTS.eval_episodes,
        help=f"episodes per evaluation (default {_TRAIN_DEFAULTS.eval_episodes})",
    )
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="SB3 hyperparameter override, VALUE as JSON when it parses (repeatable)",
    )
    p.add_argument(
        "--env-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gymnasium.make argument (repeatable)",
    )


def _add_report_options(p: argparse.ArgumentParser, stored: bool = False) -> None:
    """``--threshold`` and ``--reps``; ``stored``: default to the values recorded by `agent compare`."""
    t, r = _COMPARE_DEFAULTS.threshold, _COMPARE_DEFAULTS.bootstrap_reps
    p.add_argument(
        "--threshold",
        type=float,
        default=None if stored else t,
        help=f"headline: env steps until the IQM curve stays at or above this normalised score (1 = expert; "
        f"default {'as recorded' if stored else t})",
    )
    p.add_argument(
        "--reps",
        type=int,
        default=None if stored else r,
        help=f"bootstrap resamples (default {'as recorded' if stored else r})",
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from agents.train import parse_overrides, train_agent

    config = TrainConfig(
        env_id=args.env,
        obs=args.obs,
        arm=args.arm,
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
        frame_stack=args.frame_stack,
        normalize=args.normalize,
        normalize_reward=args.normalize_reward,
        n_envs=args.n_envs,
        vec_env=args.vec_env,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
        checkpoint_freq=args.checkpoint_freq,
        resume=not args.no_resume,
        save_replay_buffer=not args.no_replay_buffer_checkpoint,
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


def _compare_arms(args: argparse.Namespace) -> tuple[ArmSpec, ...]:
    """Arms from --obs / --arm / --arm-args (encoder paths made absolute: runs start elsewhere)."""
    import shlex

    extra: dict[str, list[str]] = {}
    for item in args.arm_args:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--arm-args expects NAME=ARGS, got {item!r} (e.g. 'state=--normalize')")
        extra.setdefault(name.strip(), []).extend(shlex.split(text))
    obs = args.obs if args.obs is not None else ([] if args.arm else list(DEFAULT_COMPARE_OBS))
    encoder = str(Path(args.encoder).resolve()) if args.encoder else None
    arms = list(arms_for_obs_modes(obs, encoder))
    for text in args.arm:
        arm = ArmSpec.parse(text)
        arms.append(replace(arm, encoder=str(Path(arm.encoder).resolve())) if arm.encoder else arm)
    unknown = sorted(set(extra) - {a.name for a in arms})
    if unknown:
        raise ValueError(
            f"--arm-args names unknown arm(s) {', '.join(unknown)}; arms: {', '.join(a.name for a in arms)}"
        )
    if encoder and "repr" not in obs:
        raise ValueError(
            "--encoder is the encoder of the 'repr' arm of --obs, but --obs has no repr (use --arm NAME=repr@DIR)"
        )
    return tuple(replace(a, train_args=tuple(extra.get(a.name, ()))).validate() for a in arms)


def _compare_config(args: argparse.Namespace) -> CompareConfig:
    from agents.train import parse_overrides

    parse_overrides(args.hp, "--hp")  # validate early
    train_args: list[str] = []
    for item in args.hp:
        train_args += ["--hp", item]
    return CompareConfig(
        env_id=args.env,
        camera=args.camera,
        arms=_compare_arms(args),
        seeds=args.seeds,
        seed0=args.seed0,
        steps=args.steps,
        algo=args.algo,
        out=args.out,
        size=args.size,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
        n_envs=args.n_envs,
        checkpoint_freq=args.checkpoint_freq,
        jobs=args.jobs,
        threads_per_run=args.threads_per_run,
        train_args=tuple(train_args),
        env_kwargs=parse_overrides(args.env_kwarg, "--env-kwarg"),
        threshold=args.threshold,
        bootstrap_reps=args.reps,
    ).validate()


def _print_outputs(files: dict, out: str) -> None:
    print(f"report: {files['html']}  (Markdown: {files['markdown']})")
    print(f"every evaluation: {files['csv']}; numbers: {files['summary']}")
    print(f"TensorBoard: tensorboard --logdir {Path(out) / 'runs'}")


def _cmd_compare(args: argparse.Namespace) -> int:
    from agents.compare import Shard, compare, plan_grid, shard_runs

    cfg = _compare_config(args)
    shard = Shard.parse(args.shard) if args.shard else None
    if args.dry_run:
        for run in shard_runs(plan_grid(cfg), shard):
            print(" ".join(run.command))
        return 0
    result, files = compare(cfg, shard=shard)
    if files is not None:
        _print_outputs(files, cfg.out)
    else:
        print(f"shard {shard} done; after all shards: wm agent aggregate {cfg.out}")
    if result.failed:
        print(
            f"wm: {len(result.failed)} run(s) failed: {', '.join(result.failed)} (see their train.log); rerun the same "
            "command to resume them" + ("; the report uses the finished runs" if files is not None else "")
        )
        return 1
    return 0


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from agents.compare import aggregate

    files = aggregate(args.out, threshold=args.threshold, reps=args.reps)
    _print_outputs(files, args.out)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from agents.demo import run_demo

    return run_demo(preset=args.preset, out=args.out, jobs=args.jobs, device=args.device, threads=args.threads)
