"""``wm data ...``: collect, merge, verify, inspect, show and import multi-view scene datasets.

Commands (``wm data COMMAND --help`` for details)::

    wm data collect --source rooms --scenes 1000 --out data/rooms [--views 10 --size 64 --workers 2 --seed 0]
                    [--shard i/n] [--camera ring|free] [--trajectory] [--parts 5] [-o key=value ...]
                    [--verify-committed]
    wm data merge PART_DIR... --out DIR
    wm data verify DIR [--no-checksums] [--allow-partial]   exit 0 ok, 1 bad files, 3 incomplete
    wm data info DIR [--json]
    wm data show DIR --out scenes.png [--scenes 4 --views 8]
    wm data import-gqn SRC DST --dataset rooms_ring_camera [--workers W] [--no-crc] [--verify-committed]
    wm data sources

Handlers import only what they need (no torch), so ``wm`` starts fast. Also runnable as
``python -m worldmodel.data.cli ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

#: ``wm data verify`` exit status when every listed file is fine but the dataset is incomplete.
EXIT_INCOMPLETE = 3


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["n_objects=2", "camera=free"]`` -> ``{"n_objects": 2, "camera": "free"}`` (JSON values when they parse)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        out[key.strip().replace("-", "_")] = _parse_value(value)
    return out


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


# ----------------------------------------------------------------------------- handlers


def _collect(args: argparse.Namespace) -> int:
    from worldmodel.data.collect import CollectConfig, collect

    options = parse_options(args.option)
    for name in ("camera", "domain", "parts", "trajectory"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    config = CollectConfig(
        source=args.source,
        scenes=args.scenes,
        out=args.out,
        views=args.views,
        size=args.size,
        seed=args.seed,
        shard_size=args.shard_size,
        shard=args.shard,
        options=options,
        workers=args.workers,
        progress=not args.quiet,
        verify_committed=args.verify_committed,
    )
    summary = collect(config)
    _report_regenerated(summary["regenerated"], "re-generated")
    state = "complete" if summary["complete"] else "INCOMPLETE"
    print(
        f"{summary['out']}: {summary['scenes']}/{summary['scenes_planned']} scenes ({state}); "
        f"{summary['new_scenes']} new in {summary['seconds']:.1f} s ({summary['scenes_per_s']:.1f} scenes/s, "
        f"{summary['workers']} workers)"
    )
    if summary["shard"]:
        print(f"part {summary['shard']} written; join all parts with: wm data merge PART_DIRS... --out DIR")
    return 0


def _report_regenerated(regenerated: list[dict[str, Any]], verb: str) -> None:
    for r in regenerated:
        print(
            f"warning: committed shard unit {r['unit']} was damaged and has been {verb}: {r['reason']}", file=sys.stderr
        )


def _merge(args: argparse.Namespace) -> int:
    from worldmodel.data.merge import merge_datasets

    m = merge_datasets(args.parts, args.out, verify_checksums=not args.no_checksums, progress=not args.quiet)
    print(f"{args.out}: merged {len(args.parts)} parts: {m['scenes']} scenes in {len(m['shards'])} shards")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from worldmodel.data.verify import verify_dataset

    report = verify_dataset(
        args.dir, checksums=not args.no_checksums, progress=not args.quiet, allow_partial=args.allow_partial
    )
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in report.problems:
        print(f"BAD: {line}", file=sys.stderr)
    what = "sizes, headers and sha256" if not args.no_checksums else "sizes and headers (no checksums)"
    if report.problems:
        print(f"{args.dir}: {len(report.problems)} problem(s) in {report.files_checked} files", file=sys.stderr)
        return 1
    if report.incomplete:
        print(f"INCOMPLETE: {report.incomplete}", file=sys.stderr)
        print(
            f"{args.dir}: the {report.files_checked} listed files are fine ({what}) but the dataset is incomplete; "
            "pass --allow-partial to accept a partial dataset",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    print(f"{args.dir}: OK ({report.files_checked} files; {what})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from worldmodel.data.format import read_manifest

    m = read_manifest(args.dir)
    c = m.get("collection") or {}
    info = {
        "path": args.dir,
        "source": m["source"],
        "scenes": m["scenes"],
        "scenes_planned": m["scenes_planned"],
        "complete": m["complete"],
        "views": m["views"],
        "size": m["size"],
        "shards": len(m["shards"]),
        "shard_size": m.get("shard_size"),
        "bytes": m.get("bytes", 0),
        "seed": c.get("seed"),
        "options": c.get("options", {}),
        "shard_part": c.get("shard"),
        "extras": m.get("extras", {}),
        "viewpoint_order": m.get("viewpoint_order", "ports"),
        "version": m["version"],
        "created": m.get("created"),
    }
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    for key, value in info.items():
        if key == "bytes":
            value = f"{value} ({_human(value)})"
        print(f"{key:>16}: {value}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from worldmodel.data.show import show_dataset

    path = show_dataset(args.dir, args.out, scenes=args.scenes, views=args.views, start=args.start)
    print(f"wrote {path}")
    return 0


def _import_gqn(args: argparse.Namespace) -> int:
    from worldmodel.data.gqn_import import ImportConfig, import_gqn

    config = ImportConfig(
        src=args.src,
        out=args.dst,
        dataset=args.dataset,
        split=args.split,
        viewpoint_order=args.viewpoint_order,
        check_crc=not args.no_crc,
        workers=args.workers,
        progress=not args.quiet,
        verify_committed=args.verify_committed,
    )
    s = import_gqn(config)
    _report_regenerated(s["regenerated"], "converted again")
    state = "complete" if s["complete"] else "INCOMPLETE"
    print(
        f"{s['out']}: {s['scenes']} scenes from {s['files']} files ({state}); {s['files_imported_now']} files "
        f"converted in {s['seconds']:.1f} s; CRC32C: {s['crc32c']}"
    )
    return 0


def _sources(args: argparse.Namespace) -> int:
    import inspect

    from envs.scenes import SCENE_SOURCES, SOURCE_DEFAULTS, generator

    for source in SCENE_SOURCES:
        views, size = SOURCE_DEFAULTS[source]
        try:
            params = inspect.signature(generator(source)).parameters
            opts = ", ".join(
                f"{n}={p.default!r}"
                for n, p in params.items()
                if n not in ("seed", "index", "views", "size") and p.default is not inspect.Parameter.empty
            )
        except (ImportError, AttributeError) as err:
            opts = f"(generator unavailable: {err})"
        print(f"{source}: views {views}, size {size}; options: {opts or '(none)'}")
    return 0


# ----------------------------------------------------------------------------- parser


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``wm data ...`` on the ``wm`` parser."""
    from envs.camera import VIEWPOINT_ORDERS
    from envs.scenes import SCENE_SOURCES

    gqn_names = (
        "jaco",
        "mazes",
        "rooms_ring_camera",
        "rooms_free_camera_no_object_rotations",
        "rooms_free_camera_with_object_rotations",
        "shepard_metzler_5_parts",
        "shepard_metzler_7_parts",
    )
    data = subparsers.add_parser(
        "data", help="multi-view scene datasets: collect, merge, verify, info, show, import-gqn"
    )
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    p = sub.add_parser("collect", help="render a dataset of multi-view scenes (parallel, resumable, shardable)")
    p.add_argument("--source", required=True, choices=list(SCENE_SOURCES), help="scene family")
    p.add_argument("--scenes", type=int, required=True, help="number of scenes of the whole dataset")
    p.add_argument("--out", required=True, help="dataset directory (rerun the same command to resume)")
    p.add_argument("--views", type=int, default=None, help="views per scene (default: the source's GQN value)")
    p.add_argument("--size", type=int, default=None, help="image size in pixels (default: the source's GQN value)")
    p.add_argument("--seed", type=int, default=0, help="base seed: scene i depends only on (seed, i)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    p.add_argument(
        "--shard", default=None, metavar="I/N", help="write only part I of N (cluster job arrays); join with merge"
    )
    p.add_argument("--shard-size", type=int, default=None, help="scenes per shard file (default: ~64 MiB of frames)")
    p.add_argument("--camera", default=None, help="camera variant passed to the generator (e.g. rooms: ring|free)")
    p.add_argument("--domain", default=None, help="visual domain passed to the generator (e.g. sim|real|randomised)")
    p.add_argument("--parts", type=int, default=None, help="Shepard-Metzler: number of cubes (5 or 7)")
    p.add_argument(
        "--trajectory",
        action="store_true",
        default=None,
        help="order views along a camera trajectory (needed for NISO pairs)",
    )
    p.add_argument(
        "-o",
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="any other generator option, VALUE parsed as JSON when possible (repeatable); see `wm data sources`",
    )
    p.add_argument(
        "--verify-committed",
        action="store_true",
        help="on resume, check committed shards by full sha256 (default: size + sampled hash); "
        "damaged ones are re-generated",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_collect)

    p = sub.add_parser("merge", help="join the parts of a --shard i/n collection into one dataset")
    p.add_argument("parts", nargs="+", help="part directories")
    p.add_argument("--out", required=True, help="merged dataset directory (shard files are hard-linked when possible)")
    p.add_argument("--no-checksums", action="store_true", help="skip sha256 checks of the parts' files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_merge)

    p = sub.add_parser(
        "verify",
        help="check a dataset (manifest, counts, sizes, sha256); exit 1 naming bad files, 3 if incomplete",
        description="Check every file of a dataset. Exit status: 0 complete and every file fine; 1 a file is "
        "missing, truncated or corrupt (each named); 3 the listed files are fine but the dataset "
        "is incomplete (the missing units are named; --allow-partial accepts it).",
    )
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--no-checksums", action="store_true", help="only sizes and headers (fast)")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="accept an incomplete dataset (exit 0 with a warning naming what is missing)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_verify)

    p = sub.add_parser("info", help="print a dataset's summary (source, scenes, views, size, bytes)")
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_info)

    p = sub.add_parser("show", help="draw a grid of views per scene (and the maze map) to a PNG")
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--scenes", type=int, default=4, help="scenes (rows)")
    p.add_argument("--views", type=int, default=8, help="views per scene (columns), spread along the trajectory")
    p.add_argument("--start", type=int, default=0, help="first scene")
    p.set_defaults(handler=_show)

    p = sub.add_parser("import-gqn", help="convert DeepMind gqn-datasets TFRecords (no TensorFlow needed)")
    p.add_argument("src", help="a .tfrecord file, a directory of them, or DeepMind's tree root")
    p.add_argument("dst", help="dataset directory to write (rerun to resume)")
    p.add_argument("--dataset", required=True, choices=gqn_names, help="which gqn-dataset the files hold")
    p.add_argument("--split", default="train", help="split sub-directory in DeepMind's tree (train|test)")
    p.add_argument(
        "--viewpoint-order",
        default="ports",
        choices=list(VIEWPOINT_ORDERS),
        help="7-d order recorded for consumers; stored cameras stay 5-d raw (x,y,z,yaw,pitch)",
    )
    p.add_argument("--no-crc", action="store_true", help="skip CRC32C checks of records")
    p.add_argument(
        "--verify-committed",
        action="store_true",
        help="on resume, check committed shards by full sha256 (default: size + sampled hash); "
        "damaged ones are converted again",
    )
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_import_gqn)

    p = sub.add_parser("sources", help="list scene sources with their default views, size and generator options")
    p.set_defaults(handler=_sources)


def main(argv: list[str] | None = None) -> int:
    """Run the ``data`` commands standalone: ``python -m worldmodel.data.cli collect ...``."""
    from worldmodel.data.format import DatasetError

    parser = argparse.ArgumentParser(prog="python -m worldmodel.data.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.handler(args) or 0)
    except (DatasetError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
