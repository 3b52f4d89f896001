"""Importing DeepMind's gqn-datasets (TFRecord) into the toolkit's format (``wm data import-gqn``).

Each record of their files is a ``tf.train.Example`` with two features: ``frames`` (V JPEG
strings) and ``cameras`` (V*5 float32: x, y, z, yaw, pitch per view, the same 5-d viewpoint
the toolkit stores). Frames are decoded with Pillow; cameras are stored unchanged (5-d raw).

The 7-d network input is derived later (``worldmodel.data.transfer.to_device``); its order is
the toolkit's ``"ports"`` convention ``(x, y, z, cos yaw, sin yaw, cos pitch, sin pitch)`` (see
``envs/camera.py``). DeepMind's reader uses ``"deepmind"`` ``(x, y, z, sin yaw, cos yaw,
sin pitch, cos pitch)``; ``viewpoint_order="deepmind"`` records that order in the manifest
(``info["viewpoint_order"]``) for consumers that must match weights trained that way. The
stored cameras are the same either way.

Work units are input files: input file ``u`` (in sorted name order) becomes shard ``u``, so an
interrupted import resumes per file; a resume also re-checks the committed shards and converts
again the files whose shards went missing or were damaged. Files are converted in parallel worker processes.
Never imports torch (or TensorFlow).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.camera import VIEWPOINT_ORDERS
from envs.scenes import SceneRecord
from worldmodel.data.format import DatasetError
from worldmodel.data.tfrecord import CRC32C_BACKEND, iter_records, parse_example
from worldmodel.data.workers import report_scene, run_units
from worldmodel.data.writer import DatasetWriter, ShardWriter

#: DeepMind dataset name -> (views per scene, image size), from their data reader.
GQN_DATASETS: dict[str, tuple[int, int]] = {
    "jaco": (11, 64),
    "mazes": (300, 84),
    "rooms_ring_camera": (10, 64),
    "rooms_free_camera_no_object_rotations": (10, 64),
    "rooms_free_camera_with_object_rotations": (10, 128),
    "shepard_metzler_5_parts": (15, 64),
    "shepard_metzler_7_parts": (15, 64),
}


@dataclass
class ImportConfig:
    """Arguments of ``wm data import-gqn``."""

    src: str
    """A ``.tfrecord`` file, a directory of them, or DeepMind's tree (``SRC/<dataset>/<split>/``)."""
    out: str
    """Dataset directory to create or resume."""
    dataset: str
    """Which gqn-dataset the files hold: one of ``GQN_DATASETS``."""
    split: str = "train"
    """Sub-directory used when ``src`` is DeepMind's tree (``train`` or ``test``)."""
    viewpoint_order: str = "ports"
    """7-d order recorded for consumers: ``"ports"`` (toolkit default) or ``"deepmind"``."""
    check_crc: bool = True
    """Verify every record's CRC32C (slow without a compiled crc32c package)."""
    workers: int = 0
    """Worker processes; 0: one per available core."""
    progress: bool = True
    """Show a progress bar."""
    verify_committed: bool = False
    """On resume, hash every committed shard in full (sha256) instead of the cheap size + sampled-hash check."""


def find_tfrecords(src: str | Path, dataset: str, split: str = "train") -> tuple[Path, list[Path]]:
    """``(base directory, sorted .tfrecord files)`` for an import source."""
    src = Path(src)
    if src.is_file():
        return src.parent, [src]
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such file or directory")
    for base in (src, src / dataset / split, src / split):
        files = sorted(p for p in base.glob("*.tfrecord") if p.is_file()) if base.is_dir() else []
        if files:
            return base, files
    raise FileNotFoundError(
        f"{src}: no *.tfrecord files there, nor in {src / dataset / split} (DeepMind's layout); "
        "point SRC at a directory of the dataset's TFRecord files"
    )


def decode_example(data: bytes, views: int, size: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(frames uint8 [V,H,W,3], cameras float32 [V,5])`` of one serialized gqn Example."""
    from PIL import Image

    try:
        features = parse_example(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise DatasetError(f"{where}: not a tf.train.Example ({err})") from None
    jpegs, cams = features.get("frames"), features.get("cameras")
    if not isinstance(jpegs, list) or not isinstance(cams, np.ndarray):
        raise DatasetError(
            f"{where}: expected features 'frames' (bytes list) and 'cameras' (float list), got {sorted(features)}"
        )
    if len(jpegs) != views or cams.shape != (views * 5,):
        raise DatasetError(
            f"{where}: expected {views} frames and {views * 5} camera floats for this dataset, "
            f"got {len(jpegs)} and {cams.size} (wrong --dataset?)"
        )
    frames = np.empty((views, size, size, 3), dtype=np.uint8)
    for v, jpeg in enumerate(jpegs):
        try:
            with Image.open(io.BytesIO(jpeg)) as img:
                arr = np.asarray(img.convert("RGB"))
        except OSError as err:
            raise DatasetError(f"{where}: frame {v} is not a decodable image ({err})") from None
        if arr.shape != (size, size, 3):
            raise DatasetError(
                f"{where}: frame {v} is {arr.shape[1]}x{arr.shape[0]}, expected {size}x{size} (wrong --dataset?)"
            )
        frames[v] = arr
    return frames, cams.reshape(views, 5).astype(np.float32)


def import_file(root: str, path: str, name: str, unit: int, dataset: str, check_crc: bool) -> dict[str, Any]:
    """Convert one TFRecord file into shard ``unit``; returns its (uncommitted) manifest entry."""
    views, size = GQN_DATASETS[dataset]
    writer = ShardWriter(root, unit, 0)
    try:
        for k, data in enumerate(iter_records(path, check_crc=check_crc)):
            frames, cameras = decode_example(data, views, size, f"{path} record {k}")
            meta = {"source": f"gqn:{dataset}", "file": name, "record": k}
            writer.add(SceneRecord(frames, cameras, meta))
            report_scene()
        if writer.count == 0:
            raise DatasetError(f"{path}: holds no records")
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def import_gqn(config: ImportConfig) -> dict[str, Any]:
    """Run (or resume) an import; returns a summary dict."""
    from tqdm import tqdm

    from worldmodel.data.collect import available_cores

    if config.dataset not in GQN_DATASETS:
        raise ValueError(f"unknown gqn dataset {config.dataset!r}; valid values: {', '.join(GQN_DATASETS)}")
    if config.viewpoint_order not in VIEWPOINT_ORDERS:
        raise ValueError(
            f"unknown viewpoint order {config.viewpoint_order!r}; valid values: {', '.join(VIEWPOINT_ORDERS)}"
        )
    base, files = find_tfrecords(config.src, config.dataset, config.split)
    names = [str(p.relative_to(base)) for p in files]
    views, size = GQN_DATASETS[config.dataset]
    header = {
        "source": f"gqn:{config.dataset}",
        "views": views,
        "size": size,
        "scenes_planned": None,
        "units_planned": len(files),
        "shard_size": None,
        "viewpoint_order": config.viewpoint_order,
        "collection": {
            "import": "gqn-datasets",
            "dataset": config.dataset,
            "files": names,
            "viewpoint_order": config.viewpoint_order,
        },
        "imported_from": str(base),
        "crc32c": CRC32C_BACKEND if config.check_crc else "not checked",
    }
    root = Path(config.out)
    with DatasetWriter(root, header, resume=True, recheck="full" if config.verify_committed else "sample") as dw:
        done = dw.done_units
        jobs = [
            (str(root), str(path), name, unit, config.dataset, config.check_crc)
            for unit, (path, name) in enumerate(zip(files, names))
            if unit not in done
        ]
        workers = min(config.workers or available_cores(), max(1, len(jobs)))
        bar = tqdm(
            unit="scene",
            desc=f"import {config.dataset}",
            disable=not config.progress,
            dynamic_ncols=True,
            initial=dw.manifest["scenes"],
        )
        start = time.perf_counter()
        try:
            run_units(import_file, jobs, dw.commit, bar, workers)
        finally:
            bar.close()
        elapsed = time.perf_counter() - start
        return {
            "out": str(root),
            "files": len(files),
            "files_imported_now": len(jobs),
            "scenes": dw.manifest["scenes"],
            "seconds": elapsed,
            "complete": dw.manifest["complete"],
            "crc32c": header["crc32c"],
            "regenerated": [{"unit": u, "reason": why} for u, why in dw.dropped],
        }
