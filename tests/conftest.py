"""Shared pytest setup: headless rendering, few threads, GPU tests skipped without CUDA."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
# Tests run on 2 cores next to subprocesses of their own: keep each process single-threaded.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
