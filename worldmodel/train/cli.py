"""``wm train <learner> ...`` and ``wm train bench``.

One subcommand per registered learner (``wm train gqn``; NISO appears once registered), with
options generated from :class:`~worldmodel.train.config.TrainConfig` and the learner's model
config dataclass (help text from the fields' docstrings). Values resolve as dataclass defaults,
then ``--preset``, then explicit options. ``--resume`` continues the run in ``--out`` from its
newest checkpoint with its saved configuration. Datasets are always opened with the cheap
per-shard check (sizes, headers, sampled hash); ``--verify`` first checks every byte (sha256)
and refuses a corrupt dataset, naming the shard file.

Torch is imported only inside the handlers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from typing import Any

from worldmodel.models.registry import LearnerSpec, available_learners
from worldmodel.train.config import TrainConfig, config_from_dict, field_docs, field_types

TRAIN_PREFIX, MODEL_PREFIX = "train__", "model__"
#: Exit code when training stops on a NaN/inf loss.
EXIT_DIVERGED = 3


def _option_kwargs(tp: Any, default: Any, doc: str, presets: dict[str, Any] | None = None) -> dict[str, Any]:
    """argparse keyword arguments for a field of type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    kwargs: dict[str, Any] = {"default": argparse.SUPPRESS}
    shown = "unset" if default is None else default
    if presets:
        shown = f"{shown}; " + ", ".join(f"preset {name}: {value}" for name, value in presets.items())
    help_text = f"{doc} (default: {shown})" if doc else f"(default: {shown})"
    if origin is typing.Union or origin is types.UnionType:
        non_none = [a for a in args if a is not type(None)]
        tp = non_none[0] if len(non_none) == 1 else str
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif origin is typing.Literal:
        kwargs.update(choices=list(args), type=type(args[0]))
    elif origin is tuple:
        kwargs.update(nargs=len(args) if Ellipsis not in args else "+", type=args[0] if args else str)
    elif tp in (int, float, str):
        kwargs["type"] = tp
    else:
        kwargs["type"] = str
    kwargs["help"] = help_text.replace("%", "%%")
    return kwargs


def add_dataclass_options(
    parser: argparse.ArgumentParser,
    cls: type,
    prefix: str,
    title: str,
    presets: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Add ``--field-name`` options for every field of dataclass ``cls`` (dest ``prefix + name``).

    ``presets`` maps preset names to their overrides of this dataclass (shown in the help).
    """
    group = parser.add_argument_group(title)
    docs, types = field_docs(cls), field_types(cls)
    defaults = cls()
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        by_preset = {name: values[f.name] for name, values in (presets or {}).items() if f.name in values}
        kwargs = _option_kwargs(types[f.name], getattr(defaults, f.name), docs.get(f.name, ""), by_preset)
        if "action" not in kwargs and "choices" not in kwargs:
            kwargs["metavar"] = f.name.upper()
        group.add_argument(flag, dest=prefix + f.name, **kwargs)


def _collect(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix)}


def _add_learner(sub: Any, spec: LearnerSpec) -> None:
    parser = sub.add_parser(
        spec.name,
        help=spec.description or f"train {spec.name}",
        description=f"Train {spec.name}: {spec.description}. Presets: {', '.join(spec.presets)} (default "
        f"{spec.default_preset}).",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--preset",
        choices=list(spec.presets),
        default=None,
        help=f"named configuration (default: {spec.default_preset}; ignored with --resume)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest checkpoint, with its saved configuration",
    )
    run.add_argument("--print-config", action="store_true", help="print the resolved configuration as JSON and exit")
    run.add_argument(
        "--verify",
        action="store_true",
        help="check the full sha256 of every shard of --data/--val-data before training (reads the "
        "datasets once); without it only sizes, headers and a sampled hash are checked",
    )
    add_dataclass_options(
        parser,
        TrainConfig,
        TRAIN_PREFIX,
        "training",
        {name: dict(p.get("train", {})) for name, p in spec.presets.items()},
    )
    add_dataclass_options(
        parser,
        spec.config_cls(),
        MODEL_PREFIX,
        f"{spec.name} model",
        {name: dict(p.get("model", {})) for name, p in spec.presets.items()},
    )
    parser.set_defaults(handler=handle_train, learner=spec.name)


def add_commands(subparsers: Any) -> None:
    """Register ``wm train`` with the ``wm`` dispatcher."""
    parser = subparsers.add_parser(
        "train",
        help="train a representation learner (gqn, ...) or benchmark training speed",
        description="Train representation learners with the shared engine (CPU/CUDA, torchrun DDP, "
        "checkpoints + resume, TensorBoard), or benchmark training speed.",
    )
    sub = parser.add_subparsers(dest="train_command", metavar="LEARNER", required=True)
    for name, spec in available_learners().items():
        if name in ("bench", "untrained"):
            raise ValueError(f"a learner may not be called {name!r} (reserved for `wm train {name}`)")
        _add_learner(sub, spec)
    from worldmodel.train.bench import add_bench_parser
    from worldmodel.untrained import add_untrained_parser

    add_bench_parser(sub)
    add_untrained_parser(sub)


def resolve_from_args(args: argparse.Namespace) -> tuple[Any, TrainConfig, str | None]:
    """``(model_config, train_config, preset)`` from parsed ``wm train <learner>`` options."""
    from worldmodel.models.registry import get_learner
    from worldmodel.train.engine import resolve_configs

    model_over, train_over = _collect(args, MODEL_PREFIX), _collect(args, TRAIN_PREFIX)
    if not args.resume:
        model_cfg, train_cfg = resolve_configs(args.learner, args.preset, model_over, train_over)
        return model_cfg, train_cfg, args.preset or get_learner(args.learner).default_preset
    from worldmodel.run_metadata import read_run_metadata

    out = train_over.get("out", TrainConfig().out)
    saved = read_run_metadata(out)["config"]
    if saved.get("learner") != args.learner:
        raise ValueError(f"--resume: {out} is a run of learner {saved.get('learner')!r}, not {args.learner!r}")
    spec = get_learner(args.learner)
    # legacy_defaults: fields the run predates take the values its checkpoints were trained with
    values = {**spec.legacy_defaults, **saved["model"], **model_over}
    model_cfg = config_from_dict(spec.config_cls(), values, f"{spec.name} model config")
    train_cfg = config_from_dict(TrainConfig, {**saved["train"], **train_over}, "training config")
    return model_cfg, train_cfg, saved.get("preset")


def handle_train(args: argparse.Namespace) -> int:
    """Handler of ``wm train <learner>``."""
    model_cfg, train_cfg, preset = resolve_from_args(args)
    if args.print_config:
        print(
            json.dumps(
                {
                    "learner": args.learner,
                    "preset": preset,
                    "model": dataclasses.asdict(model_cfg),
                    "train": dataclasses.asdict(train_cfg),
                },
                indent=2,
            )
        )
        return 0
    if args.verify:
        from worldmodel.train.data import verify_run_datasets

        for path in verify_run_datasets(train_cfg.data, train_cfg.val_data):
            print(f"wm train {args.learner}: --verify: {path}: every shard matches its sha256", file=sys.stderr)
    from worldmodel.train.engine import Trainer, TrainingDiverged

    try:
        result = Trainer(args.learner, model_cfg, train_cfg, resume=args.resume, preset=preset).fit()
    except TrainingDiverged as err:
        print(f"wm train {args.learner}: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    if result.checkpoint is not None:
        summary = {
            "run_dir": str(result.run_dir),
            "steps": result.step,
            "checkpoint": str(result.checkpoint),
            "seconds": round(result.seconds, 1),
            "last_train_loss": result.last_train.get("loss"),
            "last_eval": result.last_eval,
        }
        print(json.dumps(summary, indent=2))
    return 0
