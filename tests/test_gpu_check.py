"""The GPU scripts (gpu_check.sh, gpu_niso.sh) stop with a clear message (exit 3) on a machine without a GPU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine runs the real check")
@pytest.mark.parametrize("script", ["gpu_check.sh", "gpu_niso.sh"])
def test_without_a_gpu_the_check_says_so_and_exits_3(tmp_path, script):
    proc = subprocess.run(
        ["bash", str(SCRIPTS / script), str(tmp_path / "out")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3
    assert "no NVIDIA GPU visible" in proc.stdout
    assert "no NVIDIA GPU visible" in (tmp_path / "out" / "log.txt").read_text()
