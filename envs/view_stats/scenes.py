"""What the views of the GQN scene families show, measured on segmentation renders (``wm envs stats``).

Each function has the signature ``fn(frames: int, seed: int, size: int) -> dict[str, float]``:
it measures ``frames`` views (or sampled domains) of scenes ``0, 1, ...`` under base ``seed`` at
``size`` x ``size`` pixels and returns plain floats. The renders are MuJoCo segmentation images
(the geom seen at each pixel, no lighting or anti-aliasing), so the fractions are exact for the
views drawn. Import-light: numpy and MuJoCo only (no torch), imported when a function runs.

* :func:`rooms_view_stats`: free-camera rooms: views showing no object, views showing void
  (pixels where no geom is seen, e.g. over the walls of a room without ceiling), object fill;
* :func:`shepard_metzler_view_stats`: object fill, views with the object cut off by the image
  border, scenes where two face-sharing cubes have the same colour;
* :func:`domain_contrast_stats`: target-floor contrast of ``domain="randomised"`` domains.
"""

from __future__ import annotations

import numpy as np


def _check(frames: int, size: int) -> None:
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a positive int, got {frames!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an int >= 8 pixels, got {size!r}")


def rooms_view_stats(frames: int, seed: int, size: int) -> dict[str, float]:
    """Free-camera rooms views (``camera="free"``, independent poses, 10 views per scene, 1-3 objects).

    Returns ``views``; ``no_object_fraction`` (views in which no object pixel is seen);
    ``void_fraction`` (views with at least one pixel that sees no geom); ``object_fill_median``
    (median over views of the fraction of pixels on objects).
    """
    from envs.scenes import rooms, scene_rng

    _check(frames, size)
    fills: list[float] = []
    void: list[bool] = []
    index = 0
    while len(fills) < frames:
        rng = scene_rng(seed, index)
        layout = rooms.sample_layout(rng)
        poses = rooms.sample_cameras(rng, layout, 10, "free")[: frames - len(fills)]
        labels = rooms.label_layout(layout, poses, int(size)).reshape(len(poses), -1)
        fills += list((labels > rooms.ROOM_LABEL).mean(-1))
        void += list((labels == rooms.VOID_LABEL).any(-1))
        index += 1
    fill = np.asarray(fills)
    return {
        "views": float(len(fill)),
        "no_object_fraction": float((fill == 0).mean()),
        "void_fraction": float(np.mean(void)),
        "object_fill_median": float(np.median(fill)),
    }


def shepard_metzler_view_stats(frames: int, seed: int, size: int) -> dict[str, float]:
    """Shepard-Metzler views (15 per scene, scenes alternate 7 and 5 parts, default pitch range).

    Returns ``views``, ``scenes``; ``object_fill_median`` (median fraction of pixels on cubes);
    ``cut_off_fraction`` (views with a cube pixel on the image border); ``adjacent_same_colour_fraction``
    (scenes in which two face-sharing cubes have the same colour).
    """
    from envs.scenes import shepard_metzler as sm

    _check(frames, size)
    fills: list[float] = []
    cut: list[bool] = []
    same: list[bool] = []
    index = 0
    while len(fills) < frames:
        obj = sm.sample_scene(seed, index, 15, 7 if index % 2 == 0 else 5)
        poses = obj.poses[: frames - len(fills)]
        on = sm.label_object(obj.offsets - obj.centre, obj.colours, obj.quaternion, poses, int(size)) >= 0
        fills += list(on.reshape(len(poses), -1).mean(-1))
        border = np.concatenate([on[:, 0], on[:, -1], on[:, :, 0], on[:, :, -1]], axis=-1)
        cut += list(border.any(-1))
        same.append(sm.adjacent_same_colour(obj.offsets, obj.colours))
        index += 1
    return {
        "views": float(len(fills)),
        "scenes": float(len(same)),
        "object_fill_median": float(np.median(fills)),
        "cut_off_fraction": float(np.mean(cut)),
        "adjacent_same_colour_fraction": float(np.mean(same)),
    }


def domain_contrast_stats(frames: int, seed: int, size: int) -> dict[str, float]:
    """Target-floor contrast (:func:`envs.domain.target_contrast`) of ``frames`` randomised domains.

    Domain ``i`` is ``random_domain(default_rng(SeedSequence([seed, i])))``. The contrast is a
    property of the colours, so ``size`` (validated, kept for the common signature) is unused.
    Returns ``domains``, ``contrast_min``, ``contrast_median``, ``threshold``
    (:data:`envs.domain.MIN_TARGET_CONTRAST`) and ``below_threshold_fraction``.
    """
    from envs.domain import MIN_TARGET_CONTRAST, random_domain, target_contrast

    _check(frames, size)
    contrast = np.array(
        [
            target_contrast(d.target_rgb, d.floor_rgb, d.floor_texture)
            for d in (
                random_domain(np.random.default_rng(np.random.SeedSequence([int(seed), i]))) for i in range(frames)
            )
        ]
    )
    return {
        "domains": float(frames),
        "contrast_min": float(contrast.min()),
        "contrast_median": float(np.median(contrast)),
        "threshold": float(MIN_TARGET_CONTRAST),
        "below_threshold_fraction": float((contrast < MIN_TARGET_CONTRAST).mean()),
    }


__all__ = ["domain_contrast_stats", "rooms_view_stats", "shepard_metzler_view_stats"]
