"""``wm eval probe``: how much world state frozen encoders hold, against pixel and untrained baselines.

::

    wm eval probe --encoder [NAME=]DIR [--encoder ...] --env wm/JacoReach-v1 --camera moving --out DIR

collects frames of short random-action rollouts (:func:`worldmodel.eval.probe_data.collect_probe_frames`),
probes every representation on the same episode split (:func:`worldmodel.eval.probe.run_probe`)
and writes ``OUT/probe.json`` (atomically) and ``OUT/probe.png``. Representations, in order:

* each ``--encoder`` (label ``NAME``, or the learner's name);
* the untrained control: ``--untrained DIR``, or by default the untrained twin of the first
  encoder (same architecture, fresh weights with seed 0; :func:`worldmodel.untrained.make_untrained`
  into a temporary directory), unless ``--no-untrained``;
* ``pixels-pca`` and ``pixels-pca+viewpoint``: PCA of the raw pixels (without/with the viewpoint).

With ``--views N`` an encoder's features of a record are the mean over its frame and the frames
of the ``N-1`` env steps just before it (same episode; records then start at step ``N-1``); the
pixel baselines always see the record's frame only. ``--env-kwarg KEY=VALUE`` (repeatable; VALUE parsed as
JSON when it parses, else a string) passes other ``gym.make`` arguments to the rollouts, e.g.
``--env-kwarg target_marker=true`` (the floor disc under the target); they are recorded in
``probe.json`` and are part of the collection settings. ``--cache FILE.npz`` saves the collected frames and reuses them
when the collection settings match (plain arrays, never pickles).

Torch and scikit-learn are imported inside the handler only, so ``wm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from worldmodel.eval.eval_cli_io import add_threads_option, apply_threads

PROBE_CHOICES = ("ridge", "mlp")
PROBE_FILE = "probe.json"
PLOT_FILE = "probe.png"
#: The settings of a collection that a cache must match.
CACHE_KEYS = ("env_id", "camera", "size", "episodes", "steps", "frame_skip", "context", "seed", "env_kwargs")
#: ``gym.make`` arguments that the probe sets itself (``--camera``, ``--size``; pixel observations).
_RESERVED_ENV_KWARGS = ("camera", "size", "obs")
_QUANTITY_PREFIX = "quantity__"
_CACHE_FORMAT = "wm-probe-frames-v1"


def _label_and_path(arg: str) -> tuple[str | None, str]:
    if "=" in arg and not Path(arg).exists():
        name, _, path = arg.partition("=")
        return (name or None), path
    return None, arg


def parse_env_kwargs(items: list[str] | None, what: str = "--env-kwarg") -> dict[str, Any]:
    """Parse ``KEY=VALUE`` strings; a VALUE is JSON when it parses (``true``, numbers, lists), else a string.

    The same rule as ``agents.train.parse_overrides`` (worldmodel does not import agents).
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{what} expects KEY=VALUE, got {item!r} (e.g. target_marker=true)")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _existing_dir(option: str, path: str) -> None:
    if not path:
        raise ValueError(f"{option}: empty checkpoint path")
    if not Path(path).exists():
        raise FileNotFoundError(f"{option} {path}: no such checkpoint or run directory")
    if not Path(path).is_dir():
        raise ValueError(f"{option} {path}: not a directory (expected a checkpoint or run directory)")


# --------------------------------------------------------------------------- frame cache


def save_probe_cache(path: str | os.PathLike[str], data: Any) -> None:
    """Write a :class:`~worldmodel.eval.probe_data.ProbeFrames` to ``path`` (``.npz``, atomically, no pickles)."""
    import numpy as np

    from worldmodel.atomic import atomic_write_bytes

    arrays: dict[str, Any] = {
        "format": np.array(_CACHE_FORMAT),
        "info": np.array(json.dumps(data.info)),
        "frames": data.frames,
        "viewpoints": data.viewpoints,
        "episodes": data.episodes,
        "quantity_names": np.array(json.dumps(list(data.quantities))),
    }
    if data.context_frames is not None:
        arrays["context_frames"] = data.context_frames
        arrays["context_viewpoints"] = data.context_viewpoints
    for name, values in data.quantities.items():
        arrays[_QUANTITY_PREFIX + name] = values
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_probe_cache(path: str | os.PathLike[str]) -> Any:
    """Read a cache written by :func:`save_probe_cache` (``allow_pickle=False``)."""
    import numpy as np

    from worldmodel.eval.probe_data import ProbeFrames

    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "format" not in files or str(z["format"]) != _CACHE_FORMAT:
                raise ValueError(f"--cache {path}: not a probe-frame cache (expected format {_CACHE_FORMAT!r})")
            info = json.loads(str(z["info"]))
            names = json.loads(str(z["quantity_names"]))
            quantities = {name: z[_QUANTITY_PREFIX + name] for name in names}
            ctx = "context_frames" in files
            return ProbeFrames(
                frames=z["frames"],
                viewpoints=z["viewpoints"],
                episodes=z["episodes"],
                quantities=quantities,
                context_frames=z["context_frames"] if ctx else None,
                context_viewpoints=z["context_viewpoints"] if ctx else None,
                info=info,
            )
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(
            f"--cache {path}: cannot read the probe-frame cache ({err}); delete it or choose another file"
        ) from err


def _collect(args: argparse.Namespace, settings: dict[str, Any]) -> tuple[Any, str]:
    """The probe frames, from ``--cache`` when it matches ``settings``; returns (frames, 'cache' or 'collected')."""
    from worldmodel.eval.probe_data import collect_probe_frames

    if args.cache and Path(args.cache).is_file():
        data = load_probe_cache(args.cache)
        got = {k: data.info.get(k) for k in CACHE_KEYS}
        got["env_kwargs"] = data.info.get("env_kwargs") or {}  # caches of before --env-kwarg: none
        if got != settings:
            diff = ", ".join(
                f"{k}: cache {got[k]!r} vs asked {settings[k]!r}" for k in CACHE_KEYS if got[k] != settings[k]
            )
            raise ValueError(
                f"--cache {args.cache} was collected with other settings ({diff}); "
                "delete it or pass another --cache file"
            )
        return data, "cache"
    data = collect_probe_frames(
        settings["env_id"],
        camera=settings["camera"],
        size=settings["size"],
        episodes=settings["episodes"],
        steps=settings["steps"],
        frame_skip=settings["frame_skip"],
        context=settings["context"],
        seed=settings["seed"],
        env_kwargs=settings["env_kwargs"],
        progress=_progress(),
    )
    data.info["env_kwargs"] = dict(settings["env_kwargs"])
    if args.cache:
        save_probe_cache(args.cache, data)
        print(f"saved the probe frames to {args.cache}", file=sys.stderr)
    return data, "collected"


def _progress() -> bool:
    return sys.stderr.isatty()


# --------------------------------------------------------------------------- handler


def _check_args(args: argparse.Namespace) -> None:
    from worldmodel.eval.probe_data import QUANTITIES

    if args.env not in QUANTITIES:
        raise ValueError(
            f"--env {args.env!r} has no probe quantities; valid values: {', '.join(map(repr, QUANTITIES))}"
        )
    for name in ("episodes", "steps", "frame_skip", "views", "pca_components"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.episodes < 8:
        raise ValueError(
            f"--episodes must be >= 8 (held-out test episodes, ridge folds and the MLP's early-stopping "
            f"episodes all come from them), got {args.episodes}"
        )
    if args.size is not None and args.size < 1:
        raise ValueError(f"--size must be >= 1, got {args.size}")
    need = args.views - 1
    if need > args.steps:
        raise ValueError(
            f"--views {args.views} needs {need} earlier steps of the episode per record, "
            f"more than --steps {args.steps}; raise --steps to at least {need} or lower --views"
        )
    if not 0.0 < args.test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    for arg in args.encoder:
        _existing_dir("--encoder", _label_and_path(arg)[1])
    if args.untrained:
        _existing_dir("--untrained", _label_and_path(args.untrained)[1])
    if args.untrained and args.no_untrained:
        raise ValueError("--untrained and --no-untrained exclude each other")
    reserved = sorted(set(parse_env_kwargs(args.env_kwarg)) & set(_RESERVED_ENV_KWARGS))
    if reserved:
        raise ValueError(
            f"--env-kwarg {', '.join(reserved)}: set by the probe itself "
            "(use --camera / --size; the rollouts observe pixels)"
        )


def _encoder_record(path: str, encoder: Any) -> dict[str, Any]:
    from worldmodel.checkpoint import read_checkpoint_config
    from worldmodel.untrained import untrained_info

    config = read_checkpoint_config(path)
    return {
        "path": str(Path(path).resolve()),
        "checkpoint_dir": str(config.get("checkpoint_dir")),
        "learner": config.get("learner"),
        "step": config.get("step"),
        "feature_dim": int(encoder.feature_dim),
        "image_size": int(encoder.image_size),
        "features": encoder.metadata.get("features", getattr(getattr(encoder.model, "config", None), "features", None)),
        "untrained": untrained_info(path),
    }


def _table(result: dict[str, Any]) -> str:
    quantities = list(result["quantities"])
    reps = list(result["representations"])
    w = max(len("representation"), *(len(r) for r in reps))
    cell = max(18, *(len(q) + 2 for q in quantities))
    lines = [
        f"held-out R² by episode ({result['split']['test_episodes']} test episodes): best probe (ridge)",
        f"{'representation':<{w}} " + "".join(f"{q:>{cell}}" for q in quantities),
    ]
    for rep in reps:
        res = result["representations"][rep]
        cells = []
        for q in quantities:
            best = res["best"][q]
            ridge = res["probes"].get("ridge", {}).get(q, {}).get("r2")
            text = f"{best:.3f}" + (f" ({ridge:.3f})" if ridge is not None else "")
            cells.append(f"{text:>{cell}}")
        lines.append(f"{rep:<{w}} " + "".join(cells))
    return "\n".join(lines)


def handle_probe(args: argparse.Namespace) -> int:
    """``wm eval probe``."""
    from worldmodel.atomic import atomic_write_json
    from worldmodel.checkpoint import read_checkpoint_config
    from worldmodel.encoders import load_encoder
    from worldmodel.eval.probe import ProbeConfig, encoder_features, pixel_pca_features, plot_probe, run_probe
    from worldmodel.run_metadata import DEFAULT_PACKAGES, collect_run_metadata, package_versions, to_jsonable
    from worldmodel.untrained import make_untrained

    _check_args(args)
    apply_threads(args.threads)
    kwargs: dict[str, Any] = {"device": args.device}
    if args.features is not None:
        kwargs["features"] = args.features

    encoders: dict[str, Any] = {}
    records: dict[str, dict[str, Any]] = {}

    def add(label: str, path: str, option: str) -> None:
        if label in encoders or label in ("pixels-pca", "pixels-pca+viewpoint"):
            raise ValueError(f"{option} {path}: representation name {label!r} is already taken; label it NAME=DIR")
        enc = load_encoder(path, **kwargs)
        encoders[label] = enc
        records[label] = _encoder_record(path, enc)
        records[label]["option"] = option

    first_label = None
    for arg in args.encoder:
        name, path = _label_and_path(arg)
        label = name or str(read_checkpoint_config(path).get("learner"))
        if label in encoders and not name:
            label = f"{label} ({Path(path).name})"
        add(label, path, "--encoder")
        first_label = first_label or label
    first_path = _label_and_path(args.encoder[0])[1]

    if args.untrained:
        name, path = _label_and_path(args.untrained)
        add(name or "untrained", path, "--untrained")
    elif not args.no_untrained:
        with tempfile.TemporaryDirectory(prefix="wm-probe-untrained-") as tmp:
            twin = make_untrained(first_path, Path(tmp) / "untrained", seed=0)
            add(f"untrained {first_label}", str(twin), "auto (untrained twin of the first --encoder, seed 0)")
            records[f"untrained {first_label}"]["path"] = None  # a temporary directory, gone after the run
            records[f"untrained {first_label}"]["checkpoint_dir"] = None

    size = args.size if args.size is not None else encoders[first_label].image_size
    for label, enc in encoders.items():
        if enc.image_size != size:
            raise ValueError(
                f"{records[label]['option']} {label!r} expects {enc.image_size}x{enc.image_size} images "
                f"but the probe frames are {size}x{size} (--size {size}); probe encoders of one image size together"
            )

    settings = {
        "env_id": args.env,
        "camera": args.camera,
        "size": int(size),
        "episodes": args.episodes,
        "steps": args.steps,
        "frame_skip": args.frame_skip,
        "context": args.views - 1,
        "seed": args.seed,
        "env_kwargs": parse_env_kwargs(args.env_kwarg),
    }
    data, source = _collect(args, settings)

    representations = {label: encoder_features(enc, views=args.views) for label, enc in encoders.items()}
    representations["pixels-pca"] = pixel_pca_features(args.pca_components)
    representations["pixels-pca+viewpoint"] = pixel_pca_features(args.pca_components, with_viewpoint=True)
    config = ProbeConfig(test_fraction=args.test_fraction, pca_components=args.pca_components, seed=args.seed)
    result = run_probe(data, representations, config, probes=tuple(dict.fromkeys(args.probes)), progress=_progress())

    meta = collect_run_metadata({}, args.seed)
    options = {k: v for k, v in vars(args).items() if k != "handler"}
    result = {
        **result,
        "views": args.views,
        "env_kwargs": to_jsonable(settings["env_kwargs"]),
        "frames_source": source,
        "cache": str(Path(args.cache).resolve()) if args.cache else None,
        "encoders": records,
        "options": to_jsonable(options),
        "command": meta["command"],
        "created": meta["created"],
        "versions": {
            "python": meta["versions"]["python"],
            **package_versions((*DEFAULT_PACKAGES, "scikit-learn", "matplotlib")),
        },
        "git": meta["git"],
    }

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / PROBE_FILE, result)
    tmp_png = out / f".{PLOT_FILE}.tmp.png"
    try:
        plot_probe(result, str(tmp_png))
        os.replace(tmp_png, out / PLOT_FILE)
    finally:
        if tmp_png.exists():
            tmp_png.unlink()
    print(_table(result))
    print(f"wrote {out / PROBE_FILE} and {out / PLOT_FILE}", file=sys.stderr)
    return 0


def add_probe_parser(sub: Any) -> None:
    """Add ``wm eval probe`` to the ``wm eval`` subparsers."""
    from worldmodel.eval.probe_data import PROBE_CAMERAS

    p = sub.add_parser(
        "probe",
        help="state probes: world state (hand, target, joints) from frozen features vs pixel/untrained baselines",
        description="Regress ground-truth world-frame state (hand, target, target - hand, joint angles) from frozen "
        "features of frames of short random-action rollouts, split train/test by episode, with a ridge "
        "and an MLP probe; compares each --encoder with its untrained twin and with PCA of the raw pixels "
        "(without and with the camera viewpoint). Writes OUT/probe.json and OUT/probe.png.",
    )
    p.add_argument(
        "--encoder",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="checkpoint or run directory of a trained encoder (repeatable)",
    )
    p.add_argument(
        "--env", default="wm/JacoReach-v1", help="environment id with probe quantities (default: wm/JacoReach-v1)"
    )
    p.add_argument(
        "--camera", choices=PROBE_CAMERAS, default="moving", help="camera mode of the rollouts (default: moving)"
    )
    p.add_argument("--out", required=True, help="output directory (probe.json, probe.png)")
    p.add_argument("--size", type=int, default=None, help="image size (default: the first encoder's training size)")
    p.add_argument(
        "--env-kwarg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gymnasium.make argument of the rollouts, VALUE parsed as JSON when possible "
        "(repeatable), e.g. target_marker=true",
    )
    p.add_argument("--episodes", type=int, default=800, help="rollouts, i.e. distinct targets (default: 800)")
    p.add_argument("--steps", type=int, default=20, help="env steps per rollout (default: 20)")
    p.add_argument("--frame-skip", type=int, default=4, help="a record every this many steps (default: 4)")
    p.add_argument(
        "--views",
        type=int,
        default=1,
        help="encoder features = mean over the record's frame and those of the views-1 steps before it (default: 1)",
    )
    untrained = p.add_mutually_exclusive_group()
    untrained.add_argument(
        "--untrained",
        default=None,
        metavar="[NAME=]DIR",
        help="untrained control encoder (default: the untrained twin of the first --encoder, seed 0)",
    )
    untrained.add_argument("--no-untrained", action="store_true", help="no untrained control")
    p.add_argument(
        "--pca-components", type=int, default=256, help="components of the pixel-PCA baselines (default: 256)"
    )
    p.add_argument(
        "--probes",
        nargs="+",
        choices=PROBE_CHOICES,
        default=list(PROBE_CHOICES),
        help="probes to fit (default: ridge mlp)",
    )
    p.add_argument("--test-fraction", type=float, default=0.25, help="fraction of episodes held out (default: 0.25)")
    p.add_argument(
        "--features",
        default=None,
        help="encoder feature type passed to the loader (GQN: pooled, spatial; NISO: latent, gram, grid)",
    )
    p.add_argument(
        "--cache",
        default=None,
        metavar="FILE.npz",
        help="save the collected frames here, or reuse them when the collection settings match",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the rollouts, the episode split and the MLP (default: 0)"
    )
    p.add_argument("--device", default="cpu", help="where to run the encoders (default: cpu)")
    add_threads_option(p)
    p.set_defaults(handler=handle_probe)
