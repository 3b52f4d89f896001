"""``wm diagnose equivariance``: the command-line front end of :mod:`worldmodel.diagnostics.report`.

Torch is imported inside the handler only, so ``wm --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

# Torch-free copies of the choices (tests check them against the torch modules).
TRANSFORM_NAMES: tuple[str, ...] = (
    "translate_x",
    "translate_y",
    "rotate",
    "scale",
    "shear_x",
    "shear_y",
    "stretch_x",
    "stretch_y",
    "hyperbolic",
    "saturation",
    "brightness",
)
GEOMETRIC_NAMES: tuple[str, ...] = TRANSFORM_NAMES[:9]
PADDINGS: tuple[str, ...] = ("zeros", "border", "reflection")
HOMOGRAPHY_NAMES: tuple[str, ...] = ("rotate_15deg", "shift_3px", "homnist_draw")


def handle_equivariance(args: argparse.Namespace) -> int:
    """Handler of ``wm diagnose equivariance``."""
    import torch

    from worldmodel.diagnostics.report import diagnose_encoders

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    diagnose_encoders(
        args.encoder,
        args.out,
        data=args.data,
        transforms=args.transforms,
        images=args.images,
        untrained=args.untrained,
        layerwise=args.layerwise,
        layer_transform=args.layer_transform,
        layer_images=args.layer_images,
        probes=args.probes,
        yaw_step=args.yaw_step,
        yaw_tol=args.yaw_tol,
        pitch_tol=args.pitch_tol,
        homographies=args.homographies,
        padding=args.padding,
        device=args.device,
        seed=args.seed,
    )
    return 0


def _transform_name(value: str) -> str:
    if value not in TRANSFORM_NAMES and value != "geometric":
        raise argparse.ArgumentTypeError(
            f"unknown transform {value!r}; valid values: geometric, {', '.join(TRANSFORM_NAMES)}"
        )
    return value


def add_commands(subparsers: Any) -> None:
    """Register ``wm diagnose`` with the ``wm`` dispatcher."""
    diag = subparsers.add_parser(
        "diagnose",
        help="equivariance diagnostics of trained encoders (equivariance)",
        description="Diagnostics of learned representations.",
    )
    sub = diag.add_subparsers(dest="diagnose_command", metavar="DIAGNOSTIC", required=True)
    p = sub.add_parser(
        "equivariance",
        help="Lie-derivative LEE per transform and per layer, latent isometry table (with untrained controls)",
        description="For each encoder checkpoint (and its untrained control): the local equivariance error "
        "(Lie derivative, forward mode) of its features and of its last spatial map for one-parameter image "
        "transforms, the layer-wise attribution of the map's LEE, and the latent isometry error of a fixed "
        "camera motion (scene data) or fixed homographies (digits). Writes equivariance.json and PNG plots to --out.",
    )
    p.add_argument(
        "--encoder",
        action="append",
        required=True,
        metavar="[NAME=]CKPT",
        help="checkpoint or run directory of a trained encoder (repeatable; NAME labels its rows)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="scene dataset directory, 'digits' or an MNIST directory (default: the checkpoints' training data)",
    )
    p.add_argument(
        "--transforms",
        nargs="+",
        type=_transform_name,
        default=None,
        metavar="NAME",
        help=f"transforms (default: all): geometric, {', '.join(TRANSFORM_NAMES)}",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--images", type=int, default=64, help="probe images for the LEE (default: 64)")
    p.add_argument(
        "--untrained",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure each encoder's untrained control (default: on)",
    )
    p.add_argument(
        "--layerwise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="layer-wise attribution of the spatial map's LEE (default: on)",
    )
    p.add_argument(
        "--layer-transform",
        default="translate_x",
        choices=GEOMETRIC_NAMES,
        help="transform of the layer-wise attribution (default: translate_x)",
    )
    p.add_argument("--layer-images", type=int, default=16, help="images for the layer-wise attribution (default: 16)")
    p.add_argument("--probes", type=int, default=16, help="Hutchinson probes per image (default: 16)")
    p.add_argument(
        "--yaw-step",
        type=float,
        default=0.3,
        help="camera motion of the isometry pairs: yaw step in radians (default: 0.3)",
    )
    p.add_argument("--yaw-tol", type=float, default=0.05, help="tolerance on the yaw step (default: 0.05 rad)")
    p.add_argument("--pitch-tol", type=float, default=0.05, help="largest pitch change of a pair (default: 0.05 rad)")
    p.add_argument(
        "--homographies",
        nargs="+",
        choices=HOMOGRAPHY_NAMES,
        default=None,
        help="digits: fixed homographies of the isometry table (default: all)",
    )
    p.add_argument(
        "--padding",
        choices=PADDINGS,
        default="reflection",
        help="sampler padding of the warps (default: reflection, as the original code)",
    )
    p.add_argument("--device", default="cpu", help="device (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the view draws and probes (default: 0)")
    p.set_defaults(handler=handle_equivariance)
