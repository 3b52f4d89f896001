"""Collecting scene datasets from the scene generators: parallel, resumable, shardable.

Scene ``i`` of a dataset is ``envs.scenes.generate_scene(source, seed, i, views, size, **options)``;
its content depends only on ``(seed, i)`` and the options, never on the number of workers.
Scenes are grouped into *work units* of ``shard_size`` consecutive indices; each unit becomes one
shard, written by one worker process to temporary files and committed (rename + manifest entry)
when full. A killed collection restarted with the same command skips committed units and
redoes the others, so no scene is lost or duplicated and no torn file is ever listed. A resume
also re-checks the committed shards (existence, size, header and sampled hash; the full sha256
with ``verify_committed``) and re-generates any that went missing or were damaged since: a
unit's content depends only on its scene indices, so the result equals an uninterrupted run.

``shard="i/n"`` restricts a run to the units ``u`` with ``u % n == i`` (a disjoint part, e.g.
one task of a cluster job array); :func:`worldmodel.data.merge.merge_datasets` joins the parts.

This module never imports torch.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from envs.scenes import SCENE_SOURCES, SOURCE_DEFAULTS, generate_scene, generator
from worldmodel.data.workers import report_scene, run_units
from worldmodel.data.writer import DatasetWriter, ShardWriter, to_jsonable

#: Default shard payload: scenes per shard are chosen so a shard's frames are about this big.
TARGET_SHARD_BYTES = 64 << 20
#: Default shards are also small enough that a collection has at least this many work units
#: (so small collections still spread over the workers).
MIN_UNITS = 64


@dataclass
class CollectConfig:
    """Arguments of one collection; everything but ``workers``/``progress``/``verify_committed`` defines the content."""

    source: str
    """Scene family: one of ``envs.scenes.SCENE_SOURCES``."""
    scenes: int
    """Total number of scenes of the dataset (all shard parts together)."""
    out: str
    """Dataset directory to create or resume."""
    views: int | None = None
    """Views per scene; ``None``: the source's GQN default (``envs.scenes.SOURCE_DEFAULTS``)."""
    size: int | None = None
    """Image height = width in pixels; ``None``: the source's default."""
    seed: int = 0
    """Base seed; scene ``i`` is drawn from ``(seed, i)``."""
    shard_size: int | None = None
    """Scenes per shard (= work unit); ``None``: :func:`default_shard_size`."""
    shard: str | None = None
    """``"i/n"``: write only the units ``u`` with ``u % n == i`` (one part of a sharded run)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Source-specific generator options (``camera``, ``domain``, ``parts``, ...)."""
    workers: int = 0
    """Worker processes; 0: one per available core."""
    progress: bool = True
    """Show a tqdm progress bar (scenes/s)."""
    verify_committed: bool = False
    """On resume, hash every committed shard in full (sha256) instead of the cheap size + sampled-hash check."""


def default_shard_size(scenes: int, views: int, size: int) -> int:
    """Scenes per shard: about ``TARGET_SHARD_BYTES`` of frames, and at least ``MIN_UNITS`` units."""
    by_bytes = max(1, TARGET_SHARD_BYTES // (views * size * size * 3))
    by_units = max(1, math.ceil(scenes / MIN_UNITS))
    return int(min(by_bytes, by_units))


def parse_shard_spec(spec: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ``None`` -> ``(0, 1)``."""
    if spec is None:
        return 0, 1
    try:
        i_text, n_text = str(spec).split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {spec!r}: need n >= 1 and 0 <= i < n")
    return i, n


def validate_options(source: str, options: dict[str, Any]) -> None:
    """Raise ``ValueError`` listing the valid options if the generator does not accept one."""
    func = generator(source)
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n in params if n not in ("seed", "index", "views", "size")]
    bad = [k for k in options if k not in valid]
    if bad:
        raise ValueError(
            f"source {source!r} does not accept option(s) {bad}; valid options: {', '.join(valid) or '(none)'}"
        )


def resolved_options(source: str, options: dict[str, Any]) -> dict[str, Any]:
    """The generator's keyword defaults overridden by ``options`` (JSON-ready), for the record."""
    params = inspect.signature(generator(source)).parameters
    out = {
        n: p.default
        for n, p in params.items()
        if n not in ("seed", "index", "views", "size") and p.default is not inspect.Parameter.empty
    }
    out.update(options)

    def plain(obj: Any) -> Any:
        try:
            return to_jsonable(obj)
        except TypeError:  # e.g. a dataclass default: its repr is record enough
            return repr(obj)

    return json.loads(json.dumps(out, default=plain))


@dataclass
class _Plan:
    views: int
    size: int
    shard_size: int
    units: list[tuple[int, int, int]]  # (unit, first index, count) of this part
    header: dict[str, Any]


def plan(config: CollectConfig) -> _Plan:
    """Resolve defaults and list this part's work units; validates the arguments."""
    if config.source not in SCENE_SOURCES:
        raise ValueError(f"unknown source {config.source!r}; valid values: {', '.join(SCENE_SOURCES)}")
    if config.scenes < 1:
        raise ValueError(f"--scenes must be >= 1, got {config.scenes}")
    dv, ds = SOURCE_DEFAULTS[config.source]
    views = int(config.views or dv)
    size = int(config.size or ds)
    if views < 1 or size < 8:
        raise ValueError(f"need views >= 1 and size >= 8, got views={views} size={size}")
    shard_size = int(config.shard_size or default_shard_size(config.scenes, views, size))
    if shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
    part, parts = parse_shard_spec(config.shard)
    n_units = math.ceil(config.scenes / shard_size)
    units = [
        (u, u * shard_size, min(shard_size, config.scenes - u * shard_size))
        for u in range(n_units)
        if u % parts == part
    ]
    if not units:
        raise ValueError(f"--shard {config.shard}: this part has no work ({n_units} units in all); use fewer parts")
    validate_options(config.source, config.options)
    collection = {
        "source": config.source,
        "seed": int(config.seed),
        "scenes": int(config.scenes),
        "views": views,
        "size": size,
        "shard_size": shard_size,
        "options": dict(sorted(config.options.items())),
        "shard": None if parts == 1 else f"{part}/{parts}",
    }
    header = {
        "source": config.source,
        "generator": {
            "function": SCENE_SOURCES[config.source],
            "options": resolved_options(config.source, config.options),
        },
        "views": views,
        "size": size,
        "scenes_planned": sum(c for _, _, c in units),
        "scenes_total": int(config.scenes),
        "shard_size": shard_size,
        "units_planned": len(units),
        "units_total": n_units,
        "viewpoint_order": "ports",
        "collection": collection,
    }
    return _Plan(views, size, shard_size, units, header)


# ----------------------------------------------------------------------------- work


def collect_unit(
    root: str, source: str, seed: int, views: int, size: int, options: dict[str, Any], unit: int, first: int, count: int
) -> dict[str, Any]:
    """Generate and write one work unit; returns its (uncommitted) manifest entry."""
    writer = ShardWriter(root, unit, first)
    try:
        for index in range(first, first + count):
            record = generate_scene(source, seed, index, views, size, **options)
            record.metadata.setdefault("source", source)
            record.metadata.setdefault("seed", int(seed))
            record.metadata.setdefault("index", int(index))
            writer.add(record)
            report_scene()
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def available_cores() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def collect(config: CollectConfig) -> dict[str, Any]:
    """Run (or resume) a collection; returns a summary dict (scenes done, seconds, scenes/s, and
    ``regenerated``: the committed units found missing or damaged and written again)."""
    from tqdm import tqdm

    p = plan(config)
    root = Path(config.out)
    with DatasetWriter(root, p.header, resume=True, recheck="full" if config.verify_committed else "sample") as dw:
        done = dw.done_units
        pending = [u for u in p.units if u[0] not in done]
        already = sum(c for u, _, c in p.units if u in done)
        total = p.header["scenes_planned"]
        workers = min(config.workers or available_cores(), max(1, len(pending)))
        args = (str(root), config.source, int(config.seed), p.views, p.size, dict(config.options))
        start = time.perf_counter()
        bar = tqdm(
            total=total,
            initial=already,
            unit="scene",
            desc=f"collect {config.source}",
            disable=not config.progress,
            dynamic_ncols=True,
        )
        try:
            run_units(collect_unit, [(*args, *u) for u in pending], dw.commit, bar, workers)
        finally:
            bar.close()
        elapsed = time.perf_counter() - start
        new = sum(c for _, _, c in pending)
        return {
            "out": str(root),
            "scenes": dw.manifest["scenes"],
            "scenes_planned": total,
            "new_scenes": new,
            "resumed_from": already,
            "workers": workers,
            "seconds": elapsed,
            "scenes_per_s": new / elapsed if elapsed > 0 else float("nan"),
            "complete": dw.manifest["complete"],
            "shard": p.header["collection"]["shard"],
            "regenerated": [{"unit": u, "reason": why} for u, why in dw.dropped],
        }


def config_dict(config: CollectConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict."""
    return asdict(config)
