"""How much of the target's world position one moving-camera view can tell at all (docs/probe.md).

An oracle representation that knows the *exact* image position of the target's centre (and, with
``wm/JacoReach-v1``'s ``target_marker``, of the floor marker under it) plus the camera viewpoint is
probed with the same MLP probe as ``wm eval probe`` (``worldmodel.eval.probe.mlp_probe``). Targets
and cameras are drawn as the env draws them (``TARGET_BOX``, ``ORBIT_V1``); no rendering, so
occlusion is ignored and the numbers are upper bounds for any single-view representation.

    python scripts/probe_oracle.py [--samples 2400 20000] [--test 2000] [--pixels 64]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from envs.camera import viewpoint7
from envs.jaco_v1 import ORBIT_V1, TARGET_BOX
from worldmodel.eval.probe import ProbeConfig, mlp_probe, r2_per_dim


def sample(n: int, rng: np.random.Generator, pixels: int | None) -> dict[str, np.ndarray]:
    """Targets, viewpoints and exact (optionally pixel-rounded) projections of target and marker."""
    target = rng.uniform(TARGET_BOX[:, 0], TARGET_BOX[:, 1], (n, 3))
    centre = np.asarray(ORBIT_V1.centre)
    az = rng.uniform(-np.pi, np.pi, n)
    el = rng.uniform(*ORBIT_V1.elevation, n)
    radius = rng.uniform(*ORBIT_V1.radius, n)
    cam = centre + np.stack(
        [radius * np.cos(el) * np.cos(az), radius * np.cos(el) * np.sin(az), radius * np.sin(el)], 1
    )
    d = centre - cam
    yaw, pitch = np.arctan2(d[:, 1], d[:, 0]), np.arcsin(d[:, 2] / np.linalg.norm(d, axis=1))
    fwd = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], 1)
    right = np.stack([np.sin(yaw), -np.cos(yaw), np.zeros(n)], 1)
    up = np.cross(right, fwd)
    tan = np.tan(np.deg2rad(45.0) / 2)

    def project(p: np.ndarray) -> np.ndarray:
        q = p - cam
        z = (q * fwd).sum(1)
        uv = np.stack([(q * right).sum(1) / z / tan, (q * up).sum(1) / z / tan], 1)
        return uv if pixels is None else np.round((uv + 1) / 2 * pixels) / pixels * 2 - 1

    marker = target.copy()
    marker[:, 2] = 0.0
    vp = viewpoint7(np.concatenate([cam, yaw[:, None], pitch[:, None]], 1))
    return {"target": target, "uv_target": project(target), "uv_marker": project(marker), "viewpoint": vp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--samples", type=int, nargs="+", default=[2400, 20000], help="training samples (default 2400 20000)"
    )
    ap.add_argument("--test", type=int, default=2000, help="test samples (default 2000)")
    ap.add_argument(
        "--pixels",
        type=int,
        default=64,
        help="also round projections to this many levels (default 64: half a 32 px pixel)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    rows = []
    for n in args.samples:
        for pixels in (None, args.pixels):
            s = sample(n + args.test, rng, pixels)
            for name, cols in (("target", ["uv_target"]), ("target + marker", ["uv_target", "uv_marker"])):
                x = np.concatenate([s[c] for c in cols] + [s["viewpoint"]], axis=1)
                y = s["target"]
                groups = np.arange(len(y))  # one frame per "episode": every sample has its own target
                pred, _ = mlp_probe(
                    x[:n], y[:n], groups[:n], x[n:], ProbeConfig(mlp_epochs=300, mlp_patience=30, seed=args.seed)
                )
                r2 = r2_per_dim(y[n:], pred)
                rows.append(
                    {
                        "samples": n,
                        "rounded_to": pixels,
                        "inputs": name,
                        "r2_target": float(r2.mean()),
                        "r2_per_axis": [round(float(v), 3) for v in r2],
                    }
                )
                print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
