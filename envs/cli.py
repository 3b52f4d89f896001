"""``wm envs``: list the environments, draw their frames, benchmark their speed, measure their views (no torch)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

CAMERAS_FOR_SHOW: tuple[str, ...] = ("fixed", "moving")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``wm envs {list,show,bench,stats}``."""
    envs = subparsers.add_parser("envs", help="moving-camera MuJoCo environments")
    sub = envs.add_subparsers(dest="envs_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="list the environments with their options")
    p.set_defaults(handler=_cmd_list)

    p = sub.add_parser("show", help="write PNG grids of frames (fixed and moving cameras) and the maze map")
    p.add_argument("--out", required=True, help="output directory for the PNG files")
    p.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    p.add_argument("--steps", type=int, default=8, help="frames per row (default 8)")
    p.add_argument("--every", type=int, default=5, help="env steps between shown frames (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_cmd_show)

    p = sub.add_parser("bench", help="steps/s per env, camera and size, vs a raw mj_step + render loop")
    p.add_argument("--envs", nargs="+", default=None, help="env ids (default: all)")
    p.add_argument("--cameras", nargs="+", default=["fixed", "moving"], help="camera modes (default: fixed moving)")
    p.add_argument("--sizes", nargs="+", type=int, default=[64, 84], help="image sizes (default: 64 84)")
    p.add_argument("--steps", type=int, default=400, help="steps per timed run (default 400)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per configuration; the median is reported")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(handler=_cmd_bench)

    p = sub.add_parser(
        "stats",
        help="measured view fractions per scene family (segmentation renders); Jaco camera stats with --env",
        description=(
            "Measure what the cameras of each scene family see (segmentation renders): e.g. for the maze the "
            "fraction of wall-filled frames and of frames with background showing. Families: see "
            "envs.view_stats.STATS. The Jaco camera table (arm clipped, target visible) is produced instead "
            "when any of --env/--cameras/--sizes/--episodes is given."
        ),
    )
    p.add_argument("families", nargs="*", metavar="FAMILY", help="families to measure (default: all registered)")
    p.add_argument("--frames", type=int, default=300, help="frames measured per family and frame set (default 300)")
    p.add_argument("--size", type=int, default=64, help="image size in pixels of the family stats (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    jaco = p.add_argument_group("Jaco camera stats (the table of wm/JacoReach cameras)")
    jaco.add_argument("--env", default=None, help="a JacoReach env id (default wm/JacoReach-v1)")
    jaco.add_argument("--cameras", nargs="+", default=None, help="camera modes (default: fixed random moving)")
    jaco.add_argument("--sizes", nargs="+", type=int, default=None, help="image sizes (default 64)")
    jaco.add_argument("--episodes", type=int, default=None, help="rollouts per camera (half random, half expert; 40)")
    p.set_defaults(handler=_cmd_stats)


def _cmd_list(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import envs
    from envs.domain import DOMAIN_CHOICES
    from envs.spaces import CAMERA_MODES, OBS_MODES

    for env_id in envs.ENV_IDS:
        spec = gym.spec(env_id)
        env = gym.make(env_id, obs="state")
        doc = (type(env.unwrapped).__doc__ or "").strip().splitlines()
        print(f"{env_id}  ({spec.entry_point})")
        print(f"    {doc[0] if doc else ''}")
        print(f"    action space: {env.action_space}")
        print(
            f"    obs: {', '.join(OBS_MODES)} | camera: {', '.join(CAMERA_MODES)} | domain: {', '.join(DOMAIN_CHOICES)}"
        )
        env.close()
    return 0


def tile(frames: list[np.ndarray], columns: int, pad: int = 2) -> np.ndarray:
    """Tile equally sized uint8 ``[H,W,3]`` images into a grid with a white border."""
    h, w = frames[0].shape[:2]
    rows = (len(frames) + columns - 1) // columns
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y : y + h, x : x + w] = f
    return out


def _save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)


def _rollout_frames(
    env_id: str, camera: str, size: int, steps: int, every: int, seed: int
) -> tuple[list[np.ndarray], object]:
    import gymnasium as gym

    env = gym.make(env_id, obs="pixels", camera=camera, size=size)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    frames = [obs]
    while len(frames) < steps:
        for _ in range(every):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset()
        frames.append(obs)
    return frames, env


def _cmd_show(args: argparse.Namespace) -> int:
    import envs

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for env_id in envs.ENV_IDS:
        short = env_id.split("/")[1].split("-")[0].lower()
        for camera in CAMERAS_FOR_SHOW:
            frames, env = _rollout_frames(env_id, camera, args.size, args.steps, args.every, args.seed)
            path = out / f"{short}_{camera}.png"
            _save_png(tile(frames, columns=args.steps), path)
            written.append(path)
            if hasattr(env.unwrapped, "render_map"):
                map_path = out / f"{short}_map.png"
                _save_png(env.unwrapped.render_map(), map_path)
                if map_path not in written:
                    written.append(map_path)
            env.close()
    for p in written:
        print(f"wrote {p}")
    return 0


def bench_env(env_id: str, camera: str, size: int, steps: int, repeats: int) -> dict:
    """Median steps/s of ``env.step`` and of a raw ``mj_step`` + render loop on the same model.

    The raw loop renders the very camera poses the env went through, so a moving camera costs
    both sides the same; env and raw runs alternate so machine load hits both alike.
    """
    import gymnasium as gym
    import mujoco

    from envs.camera import CameraPose

    env = gym.make(env_id, obs="pixels", camera=camera, size=size)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    base = env.unwrapped
    poses: list[CameraPose] = []

    def run_env(record: bool = False) -> float:
        env.reset(seed=0)
        t = time.perf_counter()
        for a in actions:
            _, _, term, trunc, info = env.step(a)
            if record:
                poses.append(CameraPose.from_viewpoint(info["viewpoint"]))
            if term or trunc:
                env.reset()
        return steps / (time.perf_counter() - t)

    run_env(record=True)  # warm-up; records the poses for the raw loop
    renderer = base.ensure_renderer()
    model, data, n_sub = base.model, base.data, int(base.n_substeps)

    def run_raw() -> float:
        t = time.perf_counter()
        for pose in poses:
            for _ in range(n_sub):
                mujoco.mj_step(model, data)
            renderer.render(data, pose)
        return steps / (time.perf_counter() - t)

    run_raw()
    env_rates, raw_rates = [], []
    for _ in range(repeats):
        env_rates.append(run_env())
        raw_rates.append(run_raw())
    env.close()
    # the row is self-consistent: its overhead is the ratio of the two rates it reports
    env_med, raw_med = round(statistics.median(env_rates), 1), round(statistics.median(raw_rates), 1)
    return {
        "env": env_id,
        "camera": camera,
        "size": size,
        "env_steps_per_s": env_med,
        "raw_steps_per_s": raw_med,
        "overhead": round(raw_med / env_med, 3),
        "env_runs": [round(r, 1) for r in env_rates],
        "raw_runs": [round(r, 1) for r in raw_rates],
    }


def _cmd_bench(args: argparse.Namespace) -> int:
    import envs
    from envs.spaces import CAMERA_MODES, check_choice

    env_ids = args.envs or list(envs.ENV_IDS)
    for e in env_ids:
        check_choice("env", e, envs.ENV_IDS)
    for c in args.cameras:
        check_choice("camera", c, CAMERA_MODES)
    results = []
    print("| env | camera | size | env steps/s | raw loop steps/s | overhead (raw/env) |")
    print("|---|---|---|---|---|---|")
    for env_id in env_ids:
        for camera in args.cameras:
            for size in args.sizes:
                r = bench_env(env_id, camera, size, args.steps, args.repeats)
                results.append(r)
                print(
                    f"| {env_id} | {camera} | {size} | {r['env_steps_per_s']:.0f} | "
                    f"{r['raw_steps_per_s']:.0f} | {r['overhead']:.2f}x |",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    if any(getattr(args, k) is not None for k in ("env", "cameras", "sizes", "episodes")):
        if args.families:
            raise ValueError("--env/--cameras/--sizes/--episodes (Jaco camera stats) cannot be combined with FAMILY")
        return _jaco_camera_stats(args)
    return _family_stats(args)


def _family_stats(args: argparse.Namespace) -> int:
    import sys

    from envs.view_stats import STATS, StatsUnavailableError, get_stats_fn

    if args.frames < 1 or args.size < 8:
        raise ValueError(f"need --frames >= 1 and --size >= 8, got {args.frames} and {args.size}")
    families = list(dict.fromkeys(args.families or STATS))
    fns = {}
    for family in families:
        try:
            fns[family] = get_stats_fn(family)
        except StatsUnavailableError as err:
            print(f"wm: error: {err}", file=sys.stderr)
            return 1
    results: dict[str, dict[str, float]] = {}
    for family, fn in fns.items():
        t = time.perf_counter()
        results[family] = {k: float(v) for k, v in fn(args.frames, args.seed, args.size).items()}
        print(f"{family} ({args.frames} frames, size {args.size}, seed {args.seed}, {time.perf_counter() - t:.1f} s)")
        for key, value in results[family].items():
            print(f"    {key:32} {value:.4g}")
    if args.json:
        meta = {"frames": args.frames, "seed": args.seed, "size": args.size}
        Path(args.json).write_text(json.dumps({"config": meta, "families": results}, indent=2))
    return 0


def _jaco_camera_stats(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from envs.jaco_views import jaco_view_stats

    env_id = args.env or "wm/JacoReach-v1"
    cameras = args.cameras or ["fixed", "random", "moving"]
    sizes = args.sizes or [64]
    episodes = 40 if args.episodes is None else args.episodes
    rows = []
    configs = [(c, s) for c in cameras for s in sizes]
    for camera, size in tqdm(configs, desc="view stats", unit="config"):
        st = jaco_view_stats(env_id, camera=camera, size=size, episodes=episodes, seed=args.seed)
        rows.append({"env": env_id, "camera": camera, "size": size, **st.to_dict()})
    print(
        f"{'camera':8} {'size':>4} {'frames':>6} {'arm clipped':>11} {'target visible':>14} {'target px':>9} "
        f"{'arm px':>7}"
    )
    for r in rows:
        print(
            f"{r['camera']:8} {r['size']:>4} {r['frames']:>6} {r['arm_clipped']:>11.1%} {r['target_visible']:>14.1%} "
            f"{r['target_pixels_median']:>9.0f} {r['arm_pixels_median']:>7.0f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0
