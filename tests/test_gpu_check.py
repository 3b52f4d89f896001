"""scripts/gpu_check.sh degrades to a clear message (exit 3) on a machine without an NVIDIA GPU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine runs the real check")
def test_without_a_gpu_the_check_says_so_and_exits_3(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "no NVIDIA GPU visible" in proc.stdout
    assert "no NVIDIA GPU visible" in (tmp_path / "out" / "log.txt").read_text()
