"""Integrity costs of the dataset format (docs/dataset_format.md): CRC32C throughput and open time.

* CRC32C: ``google_crc32c`` (C) vs the pure-Python fallback, median of 5 runs each in one
  process, and ``iter_records`` over a TFRecord file with and without CRC checks.
* ``SceneDataset`` open time per check level (``size``, ``sample`` (default), ``full``) on a
  synthetic dataset of rooms-like scenes (10 views of 64 px; 2400 scenes ~ 295 MB, 64 shards),
  with a warm page cache and with the shard files evicted from it before each open.

    python scripts/bench_data_integrity.py [--scenes 2400] [--dir /tmp/wm_bench_integrity]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import time
from pathlib import Path

import numpy as np


def bench_crc(workdir: Path) -> None:
    from worldmodel.data import tfrecord

    fast, name = tfrecord.resolve_crc32c()
    rng = np.random.default_rng(0)

    def rate(fn, nbytes: int, runs: int = 5) -> tuple[float, list[float]]:
        data = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
        rates = []
        for _ in range(runs):
            t = time.perf_counter()
            fn(data)
            rates.append(nbytes / (time.perf_counter() - t) / 1e6)
        return statistics.median(rates), rates

    m_fast, r_fast = rate(fast, 256 << 20)
    m_slow, r_slow = rate(tfrecord.crc32c_python, 4 << 20)
    print(f"crc32c {name}: median {m_fast:.0f} MB/s (5 runs of 256 MiB: {', '.join(f'{x:.0f}' for x in r_fast)})")
    print(f"crc32c pure Python: median {m_slow:.2f} MB/s (5 runs of 4 MiB: {', '.join(f'{x:.2f}' for x in r_slow)})")
    print(f"crc32c speed-up: {m_fast / m_slow:.0f}x")

    def masked(c: int) -> int:
        return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    path = workdir / "bench.tfrecord"
    record = rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    with open(path, "wb") as fh:
        for _ in range(2000):
            length = struct.pack("<Q", len(record))
            head = length + struct.pack("<I", masked(fast(length)))
            fh.write(head + record + struct.pack("<I", masked(fast(record))))
    size = path.stat().st_size
    speeds = {False: [], True: []}
    for check in (False, True) * 3:
        t = time.perf_counter()
        for _ in tfrecord.iter_records(path, check_crc=check):
            pass
        speeds[check].append(size / (time.perf_counter() - t) / 1e6)
    plain = statistics.median(speeds[False])
    print(
        f"iter_records, {size / 1e6:.0f} MB file, page cache warm: no CRC {plain:.0f} MB/s, "
        f"CRC via {tfrecord.CRC32C_BACKEND} {statistics.median(speeds[True]):.0f} MB/s (medians of 3)"
    )
    path.unlink()


def bench_open(workdir: Path, scenes: int) -> None:
    from envs.scenes import SceneRecord
    from worldmodel.data.collect import default_shard_size
    from worldmodel.data.reader import SceneDataset
    from worldmodel.data.writer import write_scenes

    root, views, size = workdir / "open_ds", 10, 64
    rng = np.random.default_rng(0)
    records = (
        SceneRecord(
            rng.integers(0, 256, (views, size, size, 3), dtype=np.uint8),
            rng.normal(size=(views, 5)).astype(np.float32),
            {"index": i},
        )
        for i in range(scenes)
    )
    write_scenes(root, records, shard_size=default_shard_size(scenes, views, size), scenes=scenes)
    m = SceneDataset(root).manifest
    files = [root / e["path"] for s in m["shards"] for e in s["files"].values()]
    print(f"dataset: {m['bytes'] / 1e6:.0f} MB, {len(m['shards'])} shards, {len(files)} files")

    def evict() -> None:
        for p in files:
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

    for cold in (False, True):
        med = {}
        for level in ("size", "sample", "full"):
            times = []
            for _ in range(3 if level == "full" else 9):
                if cold:
                    evict()
                t = time.perf_counter()
                SceneDataset(root, check=level)
                times.append(time.perf_counter() - t)
            med[level] = statistics.median(times)
        where = "evicted from the page cache" if cold else "page cache warm"
        print(
            f"open ({where}): size {med['size'] * 1e3:.0f} ms, sample {med['sample'] * 1e3:.0f} ms, "
            f"full {med['full'] * 1e3:.0f} ms; sample/size {med['sample'] / med['size']:.2f}x, "
            f"full/sample {med['full'] / med['sample']:.1f}x"
        )


def main() -> None:
    """Run both benchmarks in a scratch directory (deleted afterwards)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=2400, help="scenes of the open-time dataset (123 KB each)")
    parser.add_argument("--dir", default="/tmp/wm_bench_integrity", help="scratch directory (must not exist)")
    args = parser.parse_args()
    workdir = Path(args.dir)
    workdir.mkdir(parents=True)
    try:
        bench_crc(workdir)
        bench_open(workdir, args.scenes)
    finally:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
