"""The CPU speed benchmarks of issue 14 run end to end on a tiny config and report sane figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--preset", "small", "--image-size", "16", "--batch", "2", "--context", "2", "--threads", "1"]


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def test_roofline_counts_the_step_and_times_both_precisions(tmp_path: Path) -> None:
    out = tmp_path / "roofline.json"
    _run("bench_cpu_roofline.py", *TINY, "--steps", "1", "--repeats", "1", "--json", str(out))
    report = json.loads(out.read_text())
    # A GQN step is convolutions; forward + backward is at least twice the forward's conv work.
    assert report["step_gflop"] > 0
    assert report["conv_share_of_step_flops"] > 0.9
    assert 0 < report["largest_conv"]["forward_flop_share_of_convs"] <= 1
    assert report["largest_conv"]["layer"].startswith("Conv2d(")
    for precision in ("fp32", "bf16"):
        figures = report[precision]
        assert figures["step_s"] > 0 and figures["conv_ceiling_gflops"] > 0
        assert abs(figures["step_gflops"] - report["step_gflop"] / figures["step_s"]) < 1e-6 * figures["step_gflops"]
    assert report["bf16_step_speedup"] == report["fp32"]["step_s"] / report["bf16"]["step_s"]


def test_engine_overhead_runs_the_bf16_mode(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    _run(
        "bench_engine_overhead.py",
        *TINY,
        "--steps",
        "1",
        "--warmup",
        "0",
        "--rounds",
        "1",
        "--bf16",
        "--json",
        str(out),
    )
    summary = json.loads(out.read_text())
    assert set(summary["steps_per_s"]) == {"bare", "bare_fused", "engine", "engine_bf16"}
    assert all(len(v) == 1 and v[0] > 0 for v in summary["steps_per_s"].values())
    assert "engine_bf16_speedup_vs_baseline" not in summary  # no --baseline-tree given
