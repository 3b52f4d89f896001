"""Sample-based disentanglement metrics (MIG, DCI, SAP) on the single views of a scene dataset.

The factors of a view are its camera pose and its scene's recorded factors, binned into classes
(:mod:`worldmodel.data.scene_factors`). :func:`score_codes` scores codes of such views; DCI's and
SAP's classifiers are fitted on the views of the first ``fit_fraction`` of the scenes and measured
on the views of the rest, so no scene lends views to both sides. MIG uses every view. FactorVAE
and beta-VAE scores are not available here: they fix a factor and draw new observations for it,
which a collected dataset cannot do.

:func:`evaluate_scenes` runs the whole thing for a frozen encoder or any
``representation_fn(frames uint8 [n,H,W,3], cameras float32 [n,5]) -> codes [n, D]``;
:func:`handle_scene_disentanglement` is ``wm eval disentanglement --data DIR`` on a scene dataset.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.data.scene_factors import DEFAULT_BINS, BinnedFactors, discretise, load_scene_factors
from worldmodel.eval.disentanglement.common import DisentanglementError, encode
from worldmodel.eval.disentanglement.dci import DCIConfig, dci_score
from worldmodel.eval.disentanglement.mig import MIGConfig, mig_score
from worldmodel.eval.disentanglement.sap import SAPConfig, sap_score

SCENE_METRICS = ("mig", "dci", "sap")
"""Metrics that run on a scene dataset (sample-based)."""

SceneRepresentationFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``fn(frames uint8 [n,H,W,3], cameras float32 [n,5]) -> codes [n, D]``."""


@dataclass(frozen=True)
class SceneEvalConfig:
    """Settings of the metrics on scene views."""

    num_bins: int = DEFAULT_BINS
    """Quantile bins per continuous factor."""
    fit_fraction: float = 2 / 3
    """Share of the scored scenes whose views fit DCI's and SAP's classifiers (the rest measure them)."""
    batch_size: int = 256
    """Views per representation call."""
    mig: MIGConfig = field(default_factory=MIGConfig)
    """MIG settings (20 equal-width bins per latent)."""
    dci: DCIConfig = field(default_factory=DCIConfig)
    """DCI settings (gradient-boosted trees by default)."""
    sap: SAPConfig = field(default_factory=SAPConfig)
    """SAP settings (LinearSVC accuracy on the binned factors)."""

    def __post_init__(self) -> None:
        if not 0 < self.fit_fraction < 1:
            raise DisentanglementError(f"SceneEvalConfig.fit_fraction must be in (0, 1), got {self.fit_fraction}")
        if self.batch_size < 1:
            raise DisentanglementError(f"SceneEvalConfig.batch_size must be >= 1, got {self.batch_size}")


def parse_scene_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    """Validated subset of :data:`SCENE_METRICS`; FactorVAE/beta-VAE give an error saying why not."""
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    if names == ["all"]:
        return SCENE_METRICS
    bad = [n for n in names if n not in SCENE_METRICS]
    if bad or not names:
        raise DisentanglementError(
            f"metric(s) {bad or names} cannot run on a scene dataset; allowed: {', '.join(SCENE_METRICS)} "
            "(FactorVAE and beta-VAE scores intervene on factors, which a collected dataset cannot render)"
        )
    return tuple(m for m in SCENE_METRICS if m in names)


def score_codes(
    codes: np.ndarray,
    binned: BinnedFactors,
    scene: np.ndarray,
    metrics: str | Iterable[str] = SCENE_METRICS,
    *,
    seed: int = 0,
    config: SceneEvalConfig | None = None,
) -> dict[str, Any]:
    """MIG, DCI, SAP of ``codes [n, D]`` against ``binned.classes [n, F]``, split by ``scene [n]``.

    Returns ``{"scores": {name: headline}, "metrics": {name: full result incl. "seconds"},
    "fit_scenes", "test_scenes", "fit_views", "test_views"}``.
    """
    from worldmodel.eval.disentanglement import metric_rng

    config = config or SceneEvalConfig()
    names = parse_scene_metrics(metrics)
    z = np.asarray(codes, dtype=np.float64)
    scene = np.asarray(scene)
    if z.ndim != 2 or z.shape[0] != binned.classes.shape[0] or scene.shape != (z.shape[0],):
        raise DisentanglementError(
            f"codes {z.shape}, factor classes {binned.classes.shape} and scene ids {scene.shape} must share n"
        )
    order = np.argsort(scene, kind="stable")
    z, f, scene = z[order], binned.classes[order], scene[order]
    unique = np.unique(scene)
    n_fit_scenes = int(round(config.fit_fraction * unique.size))
    if not 1 <= n_fit_scenes < unique.size:
        raise DisentanglementError(f"{unique.size} scenes are too few to split {config.fit_fraction:.2f} by scene")
    n_fit = int(np.searchsorted(scene, unique[n_fit_scenes]))
    frac = n_fit / z.shape[0]
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        t0 = time.perf_counter()
        if name == "mig":
            res = mig_score(z, f, config.mig)
        elif name == "dci":
            res = dci_score(z, f, metric_rng(seed, name), replace(config.dci, train_fraction=frac))
        else:
            res = sap_score(z, f, metric_rng(seed, name), replace(config.sap, train_fraction=frac))
        res["seconds"] = time.perf_counter() - t0
        results[name] = res
    return {
        "scores": {n: results[n]["score"] for n in names},
        "metrics": results,
        "fit_scenes": n_fit_scenes,
        "test_scenes": int(unique.size - n_fit_scenes),
        "fit_views": n_fit,
        "test_views": int(z.shape[0] - n_fit),
    }


def encoder_scene_fn(encoder: Any) -> SceneRepresentationFn:
    """The :data:`SceneRepresentationFn` of a :class:`~worldmodel.encoders.FrozenEncoder` (true viewpoints)."""

    def fn(frames: np.ndarray, cameras: np.ndarray) -> np.ndarray:
        return encoder.encode_numpy(frames, cameras if encoder.uses_viewpoint else None)

    return fn


def scene_codes(
    fn: SceneRepresentationFn, frames: np.ndarray, cameras: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Codes ``float64 [n, D]`` of views, by calls of at most ``batch_size`` (shape and finiteness checked)."""
    pos = np.arange(frames.shape[0])
    return encode(lambda i: fn(frames[i], cameras[i]), pos, batch_size)


def evaluate_scenes(
    data: str | Path,
    representation: Any,
    scenes: range | None = None,
    metrics: str | Iterable[str] = SCENE_METRICS,
    *,
    seed: int = 0,
    config: SceneEvalConfig | None = None,
) -> dict[str, Any]:
    """Load ``scenes`` of dataset ``data``, encode every view, bin the factors and score (:func:`score_codes`).

    ``representation`` is a :class:`~worldmodel.encoders.FrozenEncoder` or a :data:`SceneRepresentationFn`.
    The result adds ``"factors"`` (kept names, class counts, dropped names, bin edges),
    ``"views"`` and ``"encode_seconds"``.
    """
    config = config or SceneEvalConfig()
    fn = representation if not hasattr(representation, "encode_numpy") else encoder_scene_fn(representation)
    sf = load_scene_factors(data, scenes)
    binned = discretise(sf, config.num_bins)
    t0 = time.perf_counter()
    codes = scene_codes(fn, sf.frames, sf.cameras, config.batch_size)
    seconds = time.perf_counter() - t0
    res = score_codes(codes, binned, sf.scene, metrics, seed=seed, config=config)
    res["factors"] = {
        "names": list(binned.names),
        "sizes": list(binned.sizes),
        "dropped": list(binned.dropped),
        "edges": binned.edges,
        "categories": binned.categories,
    }
    res["views"] = len(sf)
    res["encode_seconds"] = seconds
    res["config"] = asdict(config)
    return res


def parse_scene_range(spec: str | None, num_scenes: int) -> range:
    """``"START:STOP"`` (either side may be empty; negative counts from the end) -> a range of scenes."""
    if spec is None:
        return range(num_scenes)
    try:
        a, b = spec.split(":")
        sl = slice(int(a) if a.strip() else None, int(b) if b.strip() else None)
    except ValueError:
        raise DisentanglementError(
            f"--scenes must look like START:STOP (e.g. 480:600 or -120:), got {spec!r}"
        ) from None
    r = range(num_scenes)[sl]
    if len(r) < 2:
        raise DisentanglementError(f"--scenes {spec} selects {len(r)} of {num_scenes} scenes; need at least 2")
    return r


def handle_scene_disentanglement(args: argparse.Namespace, config: Any) -> int:
    """``wm eval disentanglement --data DIR`` on a scene dataset: scores, then ``--out`` (JSON) and its plot.

    ``config`` is the CLI's :class:`~worldmodel.eval.disentanglement.EvalConfig` (its MIG, DCI and
    SAP settings are used). The default ``--metrics`` (all) means MIG, DCI, SAP here.
    """
    import json
    import sys

    from worldmodel import load_encoder
    from worldmodel.atomic import atomic_write_text
    from worldmodel.data.reader import SceneDataset
    from worldmodel.eval.disentanglement import METRICS
    from worldmodel.eval.disentanglement_cli import plot_scores
    from worldmodel.run_metadata import collect_run_metadata, package_versions, to_jsonable

    metrics = SCENE_METRICS if args.metrics == ",".join(METRICS) else parse_scene_metrics(args.metrics)
    scenes = parse_scene_range(args.scenes, len(SceneDataset(args.data)))
    encoder = load_encoder(args.run, device=args.device)
    scene_config = SceneEvalConfig(
        num_bins=args.bins, batch_size=args.batch_size or 256, mig=config.mig, dci=config.dci, sap=config.sap
    )
    t0 = time.perf_counter()
    res = evaluate_scenes(args.data, encoder, scenes, metrics, seed=args.seed, config=scene_config)
    meta = collect_run_metadata(scene_config, args.seed)
    meta["versions"].update(package_versions(("scikit-learn", "scipy", "matplotlib")))
    result = {
        "format": "wm-disentanglement-scenes-v1",
        "run": str(args.run),
        "encoder": {
            "name": encoder.name,
            "feature_dim": encoder.feature_dim,
            "viewpoint": "recorded" if encoder.uses_viewpoint else None,
        },
        "data": args.data,
        "scenes": [scenes.start, scenes.stop],
        "seed": args.seed,
        **res,
        "seconds": {
            "total": time.perf_counter() - t0,
            "encode": res["encode_seconds"],
            **{n: r["seconds"] for n, r in res["metrics"].items()},
        },
        "versions": meta["versions"],
        "command": meta["command"],
        "created": meta["created"],
        "git": meta["git"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(to_jsonable(result), indent=2, default=lambda o: np.asarray(o).tolist()) + "\n")
    scores = dict(res["scores"])
    if "dci" in res["metrics"]:
        scores.update(dci_C=res["metrics"]["dci"]["completeness"], dci_I=res["metrics"]["dci"]["informativeness"])
    png = out.with_suffix(".png")
    plot_scores(png, scores, f"{encoder.name} on {Path(args.data).name} scenes {scenes.start}:{scenes.stop}")
    for name in metrics:
        print(f"{name:<10} {res['scores'][name]:.3f}   ({res['metrics'][name]['seconds']:.1f} s)", file=sys.stderr)
    print(
        f"factors: {', '.join(res['factors']['names'])} (dropped: {', '.join(res['factors']['dropped']) or 'none'})",
        file=sys.stderr,
    )
    print(f"wrote {out} and {png}", file=sys.stderr)
    return 0


__all__ = [
    "SCENE_METRICS",
    "SceneEvalConfig",
    "SceneRepresentationFn",
    "encoder_scene_fn",
    "evaluate_scenes",
    "handle_scene_disentanglement",
    "parse_scene_metrics",
    "parse_scene_range",
    "scene_codes",
    "score_codes",
]
