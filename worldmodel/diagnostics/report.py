"""``wm diagnose equivariance``: every diagnostic for a set of encoders, as JSON, tables and plots.

:func:`diagnose_encoders` loads each checkpoint as a frozen encoder beside its untrained control,
then measures on the encoders' data (a scene dataset, or the homography digits):

1. the LEE of the features (invariance) for each transform, and of the last spatial map
   (equivariance), absolute and relative to ``||f||^2``;
2. the layer-wise attribution of the spatial map's LEE for one geometric transform;
3. the latent isometry table: held-out errors of the best orthogonal / linear / identity map for a
   fixed camera motion (scene data) or fixed homographies (digits), plus NISO's per-pair ``tau``.

Outputs in ``--out``: ``equivariance.json`` (atomic), ``lee_transforms.png``, ``lee_layers.png``,
``isometry.png`` and ``isometry.md``.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.diagnostics.transforms import GEOMETRIC_NAMES, resolve_transforms


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "encoder"


def _label_and_path(arg: str) -> tuple[str | None, str]:
    if "=" in arg and not Path(arg).exists():
        name, _, path = arg.partition("=")
        return name, path
    return None, arg


def _is_digits(data: str) -> bool:
    from worldmodel.data.homography import is_digit_source

    return is_digit_source(data)


def load_images(data: str, image_size: int, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Probe images (float ``[n, C, H, W]`` in [0, 1]) and their viewpoints (``[n, 5]`` or None).

    Digits: the first ``count`` test digits (grey). Scene datasets: one view (drawn with ``seed``)
    of each of the first ``count`` scenes.
    """
    if _is_digits(data):
        from worldmodel.data.homography import load_digit_images

        x, _ = load_digit_images(data, "test", image_size)
        return x[:count].float() / 255.0, None
    from worldmodel.data.reader import SceneDataset

    ds = SceneDataset(data)
    if ds.size != image_size:
        raise ValueError(f"{data} holds {ds.size}x{ds.size} images but the encoder expects {image_size}x{image_size}")
    rng = np.random.default_rng(seed)
    frames, cams = [], []
    for scene in range(min(count, len(ds))):
        f, c = ds.read_views(scene, [int(rng.integers(ds.views))])
        frames.append(f[0]), cams.append(c[0])
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return x, torch.from_numpy(np.stack(cams)).float()


def _lee_rows(
    fn: Any, images: torch.Tensor, views: torch.Tensor | None, transforms: Sequence[str], padding: str, output: str
) -> dict[str, Any]:
    from worldmodel.diagnostics.lie_derivative import local_equivariance_error

    extra = () if views is None else (views,)
    res = local_equivariance_error(
        fn,
        images,
        transforms,
        output=output,
        padding=padding,
        extra_args=extra,
        skip_inapplicable=True,
        progress=True,
        batch_size=32,
    )
    return {k: v.summary() for k, v in res.items()}


def diagnose_encoders(
    encoders: Sequence[str],
    out: str,
    data: str | None = None,
    transforms: Sequence[str] | None = None,
    images: int = 64,
    untrained: bool = True,
    layerwise: bool = True,
    layer_transform: str = "translate_x",
    layer_images: int = 16,
    probes: int = 16,
    yaw_step: float = 0.3,
    yaw_tol: float = 0.05,
    pitch_tol: float = 0.05,
    homographies: Sequence[str] | None = None,
    padding: str = "reflection",
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Run every diagnostic on ``encoders`` (``[NAME=]CHECKPOINT`` strings) and write the outputs.

    Returns the JSON-able result (also written to ``out/equivariance.json``).
    """
    from worldmodel.atomic import atomic_write_json, atomic_write_text
    from worldmodel.checkpoint import read_checkpoint_config
    from worldmodel.diagnostics.adapters import image_function, untrained_encoder
    from worldmodel.diagnostics.isometry import DIGIT_HOMOGRAPHIES, digit_isometry, scene_isometry
    from worldmodel.diagnostics.layerwise import layerwise_lee
    from worldmodel.encoders import load_encoder

    if not encoders:
        raise ValueError("give at least one --encoder [NAME=]CHECKPOINT")
    names = [t.name for t in resolve_transforms(list(transforms) if transforms else None)]
    if layer_transform not in GEOMETRIC_NAMES:
        raise ValueError(f"--layer-transform must be geometric; valid values: {', '.join(GEOMETRIC_NAMES)}")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for arg in encoders:
        label, path = _label_and_path(arg)
        cfg = read_checkpoint_config(path)
        enc = load_encoder(path, device=device)
        label = label or enc.name
        if label in loaded:
            raise ValueError(f"two encoders are called {label!r}; label them NAME=CHECKPOINT")
        enc_data = data or cfg.get("train", {}).get("data")
        if not enc_data:
            raise ValueError(f"{path}: the checkpoint does not name its training data; pass --data DIR|digits")
        loaded[label] = enc
        sources[label] = str(enc_data)
        if untrained:
            ctrl = untrained_encoder(path, device=device, out=str(out_dir / "untrained" / _slug(label)))
            loaded[f"{label} untrained"] = ctrl
            sources[f"{label} untrained"] = str(enc_data)
    if len(set(sources.values())) > 1 and data is None:
        raise ValueError(
            f"the encoders were trained on different data ({sorted(set(sources.values()))}); pass one --data"
        )
    data = next(iter(sources.values()))
    digits = _is_digits(data)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"data": data, "transforms": names, "padding": padding, "images": images, "encoders": {}}
    for label, enc in loaded.items():
        x, views = load_images(data, enc.image_size, images, seed)
        x = x.to(enc.device)
        views = None if views is None else views.to(enc.device)
        print(f"[{label}] LEE of features and map on {x.shape[0]} images", file=sys.stderr)
        row: dict[str, Any] = {
            "name": enc.name,
            "feature_dim": enc.feature_dim,
            "image_size": enc.image_size,
            "metadata": {k: v for k, v in enc.metadata.items() if isinstance(v, (str, int, float, bool))},
        }
        row["features"] = _lee_rows(image_function(enc, "features"), x, views, names, padding, "vector")
        try:
            fmap = image_function(enc, "map")
            row["map"] = _lee_rows(fmap, x, views, names, padding, "map")
        except ValueError as err:
            fmap, row["map"] = None, {"error": str(err)}
        if layerwise and fmap is not None:
            extra = () if views is None else (views[:layer_images],)
            lw = layerwise_lee(
                fmap,
                x[:layer_images],
                layer_transform,
                output="map",
                padding=padding,
                probes=probes,
                extra_args=extra,
                seed=seed,
            )
            row["layerwise"] = lw.summary()
        result["encoders"][label] = row
    print("latent isometry table", file=sys.stderr)
    if digits:
        iso = digit_isometry(loaded, data, tuple(homographies or DIGIT_HOMOGRAPHIES))
        result["isometry"] = {
            "kind": "digit homographies",
            "results": [r.summary() for r in iso],
            "homographies": {h: DIGIT_HOMOGRAPHIES[h] for h in (homographies or DIGIT_HOMOGRAPHIES)},
        }
    else:
        iso, stats = scene_isometry(loaded, data, yaw_step, yaw_tol, pitch_tol)
        result["isometry"] = {"kind": "camera motion", "pairs": stats, "results": [r.summary() for r in iso]}
    result["seconds"] = time.perf_counter() - t0
    table = isometry_markdown(result)
    atomic_write_text(out_dir / "isometry.md", table)
    atomic_write_json(out_dir / "equivariance.json", result)
    plot_transforms(result, out_dir / "lee_transforms.png")
    if layerwise:
        plot_layers(result, out_dir / "lee_layers.png")
    plot_isometry(result, out_dir / "isometry.png")
    print(table, file=sys.stderr)
    print(
        f"wrote {out_dir}/equivariance.json, lee_transforms.png, lee_layers.png, isometry.png, isometry.md",
        file=sys.stderr,
    )
    return result


# ----------------------------------------------------------------------------- tables and plots


def _pct(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100.0 * float(v):.2f}%"


def isometry_markdown(result: dict[str, Any]) -> str:
    """The isometry table as Markdown."""
    iso = result["isometry"]
    lines = [
        f"Latent isometry error ({iso['kind']}, data {result['data']}): "
        "held-out ||M z(x) - z(Tx)||^2 / ||z(Tx)||^2, mean over pairs.",
        "",
    ]
    if iso["kind"] == "camera motion":
        p = iso["pairs"]
        lines += [
            f"Pairs: yaw step {p['yaw_step']} +- {p['yaw_tol']} rad, |pitch step| <= {p['pitch_tol']} rad; "
            f"{p['fit_pairs']} fit pairs ({p['fit_scenes']} scenes), "
            f"{p['test_pairs']} test pairs ({p['test_scenes']} scenes); selected steps: "
            f"yaw {p['yaw_mean']:.3f} +- {p['yaw_std']:.3f}, pitch {p['pitch_mean']:.3f} +- {p['pitch_std']:.3f}.",
            "",
        ]
    lines += [
        "| encoder | transformation | dim | identity | best orthogonal R | best linear W | "
        "centred: identity | centred: R | centred: W | NISO tau (per pair) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in iso["results"]:
        lines.append(
            f"| {r['encoder']} | {r['transformation']} | {r['dim']} | {_pct(r['identity'])} | {_pct(r['orthogonal'])} "
            f"| {_pct(r['linear'])} | {_pct(r.get('centred_identity'))} | {_pct(r.get('centred_orthogonal'))} | "
            f"{_pct(r.get('centred_linear'))} | {_pct(r.get('niso_tau_error'))} |"
        )
    lines += [
        "",
        "Centred: the fit pairs' means are subtracted first (affine maps); uncentred errors are small whenever "
        "the features share a large common component.",
    ]
    return "\n".join(lines) + "\n"


def _agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_transforms(result: dict[str, Any], path: str | Path) -> None:
    """Per-transform bars of the relative LEE (features and map), one colour per encoder."""
    plt = _agg()
    encs = result["encoders"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    for ax, key, title in (
        (axes[0], "features", "features (invariance)"),
        (axes[1], "map", "spatial map (equivariance)"),
    ):
        rows = {k: v[key] for k, v in encs.items() if isinstance(v.get(key), dict) and "error" not in v[key]}
        if not rows:
            ax.set_axis_off()
            continue
        names = list(next(iter(rows.values())))
        width = 0.8 / max(1, len(rows))
        for i, (label, row) in enumerate(rows.items()):
            xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(names))]
            vals = [row[n]["relative"] for n in names]
            errs = [row[n]["relative_sem"] for n in names]
            ax.bar(xs, vals, width, yerr=errs, label=label, capsize=2)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
        ax.set_ylabel("relative LEE  ||Lf||^2 / ||f||^2")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_layers(result: dict[str, Any], path: str | Path) -> None:
    """Per-layer shares of the spatial map's LEE, one panel per encoder."""
    plt = _agg()
    rows = {k: v["layerwise"] for k, v in result["encoders"].items() if "layerwise" in v}
    if not rows:
        return
    widest = max(len(lw["layers"]) for lw in rows.values())
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(8.0, 0.32 * widest + 3), 3.6 * len(rows)), squeeze=False)
    for ax, (label, lw) in zip(axes[:, 0], rows.items(), strict=True):
        layers = lw["layers"]
        e2e = lw["end_to_end"] or 1.0
        shares = [lay["share"] / e2e for lay in layers] + [lw["unattributed"] / e2e]
        errs = [lay["sem"] / e2e for lay in layers] + [0.0]
        labels = [f"{lay['name']} ({lay['module']})" for lay in layers] + ["outside modules"]
        ax.bar(range(len(shares)), shares, yerr=errs, color=["#4c72b0"] * len(layers) + ["#999999"], capsize=2)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(range(len(labels)), labels, fontsize=6, rotation=90)
        ax.set_ylabel("share of LEE")
        ax.set_title(
            f"{label}: {lw['transform']} ({lw['estimator']}, {lw['probes']} probes), "
            f"end-to-end {lw['end_to_end']:.3g}, layers sum {lw['total']:.3g} +- {lw['total_sem']:.2g}",
            fontsize=9,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_isometry(result: dict[str, Any], path: str | Path) -> None:
    """The isometry table as grouped bars (identity, orthogonal, linear; NISO's tau where known)."""
    plt = _agg()
    rows = result["isometry"]["results"]
    labels = [f"{r['encoder']}\n{r['transformation']}" for r in rows]
    keys = [
        ("identity", "identity"),
        ("orthogonal", "best orthogonal R"),
        ("linear", "best linear W"),
        ("centred_identity", "centred identity"),
        ("centred_orthogonal", "centred R"),
        ("centred_linear", "centred W"),
        ("niso_tau_error", "NISO tau (per pair)"),
    ]
    keys = [k for k in keys if any(r.get(k[0]) is not None for r in rows)]
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(rows) + 3), 4.8))
    width = 0.8 / len(keys)
    for i, (key, name) in enumerate(keys):
        vals = [float(r[key]) if r.get(key) is not None else float("nan") for r in rows]
        ax.bar([j + (i - (len(keys) - 1) / 2) * width for j in range(len(rows))], vals, width, label=name)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("held-out ||M z(x) - z(Tx)||^2 / ||z(Tx)||^2")
    ax.set_title(f"latent isometry error ({result['isometry']['kind']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
