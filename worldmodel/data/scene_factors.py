"""Ground-truth factors of scene datasets, per view, for the disentanglement metrics.

The scene generators record each scene's factors in its metadata (``"factors"``: name -> value,
``None`` where undefined, e.g. an empty object slot of a room; ``"factor_kinds"``: name ->
``"continuous"`` or ``"categorical"``): Jaco joint angles and target position
(:func:`envs.scenes.jaco_scenes.scene_factors`), Rooms colours, shapes, positions and yaws per
object slot (:func:`envs.scenes.rooms.layout_factors`). A single view's factors are its camera
pose (``camera/x|y|z|yaw|pitch``, the dataset's ``cameras`` row) followed by its scene's factors.

The metrics need classes, so continuous factors are binned (:func:`discretise`): ``num_bins``
quantile bins (equal counts), a
value that is undefined (``NaN``) gets a class of its own (the last one). Bins are computed on
the views being scored (the held-out scenes), not on the codes. Categorical factors
keep their distinct values as classes. Factors left with a single class carry no information
and are dropped (:attr:`BinnedFactors.dropped`), e.g. the fixed fingers of the Jaco v1 task.

Only the sample-based metrics (MIG, DCI, SAP) apply to such a fixed dataset: FactorVAE and
beta-VAE scores fix one factor and draw fresh observations for it, which a collected dataset
cannot provide (its factor combinations are not a product grid). See docs/disentanglement.md.

This module never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worldmodel.data.format import MANIFEST_NAME
from worldmodel.data.reader import SceneDataset

CAMERA_FACTORS: tuple[str, ...] = ("camera/x", "camera/y", "camera/z", "camera/yaw", "camera/pitch")
"""Names of the per-view camera factors (the 5-d viewpoint, metres and radians)."""
FACTOR_KINDS: tuple[str, ...] = ("continuous", "categorical")
"""Kinds a recorded factor may have."""
DEFAULT_BINS = 10
"""Quantile bins per continuous factor (:func:`discretise`)."""


class SceneFactorError(ValueError):
    """A scene dataset has no (or inconsistent) recorded factors, or a binning argument is invalid."""


@dataclass(frozen=True)
class SceneFactors:
    """Single views of a scene dataset with their ground-truth factor values (one row per view)."""

    frames: np.ndarray
    """uint8 ``[n, H, W, 3]`` views."""
    cameras: np.ndarray
    """float32 ``[n, 5]`` viewpoint of each view (x, y, z, yaw, pitch)."""
    values: np.ndarray
    """float64 ``[n, F]`` factor values: the camera pose, then the scene's factors (NaN: undefined)."""
    names: tuple[str, ...]
    """Factor name of each column of ``values``."""
    kinds: tuple[str, ...]
    """``"continuous"`` or ``"categorical"`` per column."""
    scene: np.ndarray
    """int64 ``[n]``: position of the view's scene in the dataset (0 .. len-1)."""
    view: np.ndarray
    """int64 ``[n]``: the view's index within its scene."""

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class BinnedFactors:
    """Factor classes for the metrics, from :func:`discretise`."""

    classes: np.ndarray
    """int64 ``[n, F']``: class of each kept factor (``0 .. sizes[k]-1``)."""
    names: tuple[str, ...]
    """Names of the kept factors."""
    sizes: tuple[int, ...]
    """Number of classes of each kept factor."""
    edges: dict[str, list[float]]
    """Inner bin edges of each kept continuous factor (class ``i`` lies between edges ``i-1`` and ``i``)."""
    categories: dict[str, list[float]]
    """Distinct values of each categorical factor (class ``i`` is ``categories[name][i]``)."""
    dropped: tuple[str, ...]
    """Factors dropped because they took a single class."""


def is_scene_dataset(path: str | Path) -> bool:
    """Whether ``path`` is a scene dataset directory (it holds a ``manifest.json``)."""
    return (Path(path) / MANIFEST_NAME).is_file()


def _scene_record(meta: dict, scene: int, root: Path) -> tuple[list[str], list[float], list[str]]:
    factors, kinds = meta.get("factors"), meta.get("factor_kinds")
    if not isinstance(factors, dict) or not isinstance(kinds, dict) or not factors:
        raise SceneFactorError(
            f"{root}: scene {scene} records no ground-truth factors (metadata has no 'factors'); sources that record "
            "them: jaco, rooms (collected with this version: rerun the same `wm data collect` into a new directory)"
        )
    names = list(factors)
    bad = [n for n in names if kinds.get(n) not in FACTOR_KINDS]
    if bad:
        raise SceneFactorError(f"{root}: scene {scene}: factor(s) {bad} have no kind in {FACTOR_KINDS}")
    values = [np.nan if factors[n] is None else float(factors[n]) for n in names]
    return names, values, [kinds[n] for n in names]


def load_scene_factors(
    data: str | Path | SceneDataset,
    scenes: Sequence[int] | range | None = None,
    views: Sequence[int] | None = None,
) -> SceneFactors:
    """Views of ``scenes`` (default: all) of a dataset with their factors: camera pose + scene factors.

    ``views`` picks view indices within each scene (default: all). Raises
    :class:`SceneFactorError` naming the dataset if a scene records no factors or the scenes
    disagree on the factor names.
    """
    ds = data if isinstance(data, SceneDataset) else SceneDataset(data)
    idx = list(range(len(ds)) if scenes is None else scenes)
    if not idx:
        raise SceneFactorError(f"{ds.root}: no scenes selected")
    view_idx = np.arange(ds.views) if views is None else np.asarray(list(views), dtype=np.int64)
    if view_idx.size == 0 or view_idx.min() < 0 or view_idx.max() >= ds.views:
        raise SceneFactorError(f"{ds.root}: views must be indices in 0..{ds.views - 1}, got {view_idx.tolist()}")
    frames, cameras, rows = [], [], []
    names: list[str] | None = None
    kinds: list[str] = []
    for i in idx:
        n, v, k = _scene_record(ds.metadata(i), i, ds.root)
        if names is None:
            names, kinds = n, k
        elif n != names or k != kinds:
            raise SceneFactorError(f"{ds.root}: scene {i} records factors {n}, scene {idx[0]} records {names}")
        f, c = ds.read_views(i, view_idx)
        frames.append(f)
        cameras.append(c)
        rows.append(np.broadcast_to(np.asarray(v, dtype=np.float64), (len(view_idx), len(v))))
    cam = np.concatenate(cameras).astype(np.float32)
    values = np.concatenate([cam.astype(np.float64), np.concatenate(rows)], axis=1)
    return SceneFactors(
        frames=np.concatenate(frames),
        cameras=cam,
        values=values,
        names=CAMERA_FACTORS + tuple(names or ()),
        kinds=("continuous",) * len(CAMERA_FACTORS) + tuple(kinds),
        scene=np.repeat(np.asarray(idx, dtype=np.int64), len(view_idx)),
        view=np.tile(view_idx, len(idx)),
    )


def quantile_edges(values: np.ndarray, num_bins: int) -> np.ndarray:
    """Inner edges of ``num_bins`` equal-count bins of the finite ``values`` (repeated edges merged)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(0)
    return np.unique(np.quantile(finite, np.linspace(0, 1, num_bins + 1)[1:-1]))


def discretise(factors: SceneFactors, num_bins: int = DEFAULT_BINS) -> BinnedFactors:
    """Classes of every factor of ``factors`` for the metrics (see the module doc).

    Continuous factors go into ``num_bins`` quantile bins of the given views (at most: tied
    quantiles merge) and categorical ones keep their distinct values; undefined values (NaN)
    get one more class, the last. Factors left with a single class are dropped.
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 2:
        raise SceneFactorError(f"num_bins must be an integer >= 2, got {num_bins!r}")
    columns, names, sizes = [], [], []
    edges: dict[str, list[float]] = {}
    categories: dict[str, list[float]] = {}
    dropped = []
    for k, (name, kind) in enumerate(zip(factors.names, factors.kinds, strict=True)):
        x = factors.values[:, k]
        missing = ~np.isfinite(x)
        if kind == "continuous":
            e = quantile_edges(x, int(num_bins))
            cls, n_defined = np.digitize(np.where(missing, -np.inf, x), e), len(e) + 1
        else:
            cats = np.unique(x[~missing])
            cls, n_defined = np.searchsorted(cats, np.where(missing, -np.inf, x)), cats.size
        cls = np.where(missing, n_defined, cls).astype(np.int64)
        if np.unique(cls).size < 2:
            dropped.append(name)
            continue
        columns.append(cls)
        names.append(name)
        sizes.append(int(n_defined + missing.any()))
        if kind == "continuous":
            edges[name] = [float(v) for v in e]
        else:
            categories[name] = [float(v) for v in cats]
    if not columns:
        raise SceneFactorError(f"every factor takes a single class ({', '.join(factors.names)}): nothing to score")
    return BinnedFactors(np.stack(columns, axis=1), tuple(names), tuple(sizes), edges, categories, tuple(dropped))


def channel_first(frames: np.ndarray) -> np.ndarray:
    """uint8 ``[n, H, W, 3]`` views -> uint8 ``[n, 3, H, W]`` (the factor-file layout)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise SceneFactorError(f"frames must be [n, H, W, 3], got {frames.shape}")
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))


def scene_split(num_scenes: int, test_fraction: float) -> tuple[range, range]:
    """``(fit scenes, held-out scenes)``: the last ``round(test_fraction * n)`` scenes are held out.

    The same rule as the training engine's ``val_fraction``, so a learner trained with
    ``--val-fraction f`` never saw the held-out scenes.
    """
    if not 0 < test_fraction < 1:
        raise SceneFactorError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = max(1, int(round(test_fraction * num_scenes)))
    if n_test >= num_scenes:
        raise SceneFactorError(f"{num_scenes} scenes are too few to hold out {test_fraction:.2f}")
    return range(0, num_scenes - n_test), range(num_scenes - n_test, num_scenes)


__all__ = [
    "CAMERA_FACTORS",
    "DEFAULT_BINS",
    "FACTOR_KINDS",
    "BinnedFactors",
    "SceneFactorError",
    "SceneFactors",
    "channel_first",
    "discretise",
    "is_scene_dataset",
    "load_scene_factors",
    "quantile_edges",
    "scene_split",
]
