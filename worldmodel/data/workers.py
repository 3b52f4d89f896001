"""Running work units (one shard each) in worker processes with a live scenes/s progress bar.

Shared by collection and import: each task writes one shard and returns its manifest entry;
the parent commits entries to the manifest as they arrive (it is the only manifest writer).
Workers report every finished scene through a shared counter so the bar moves between
shard completions. Workers die with the parent (Linux ``PR_SET_PDEATHSIG``), so a killed
collector leaves no orphan writing behind its back. Never imports torch.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

#: Called once per finished scene in the current process (progress); see :func:`report_scene`.
_ON_SCENE: Callable[[], None] | None = None


def report_scene() -> None:
    """Tell the progress bar that one more scene is done (no-op outside a run)."""
    if _ON_SCENE is not None:
        _ON_SCENE()


def _bump(counter: Any) -> Callable[[], None]:
    def bump() -> None:
        with counter.get_lock():
            counter.value += 1

    return bump


def _init_worker(counter: Any) -> None:
    """Pool initialiser: report progress through the shared counter; die with the parent."""
    global _ON_SCENE
    _ON_SCENE = _bump(counter)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def run_units(
    task: Callable[..., dict[str, Any]],
    jobs: Sequence[tuple[Any, ...]],
    commit: Callable[[dict[str, Any]], None],
    bar: Any,
    workers: int,
) -> None:
    """Run ``task(*job)`` for every job and ``commit`` each result as it arrives.

    With ``workers <= 1`` everything runs in this process (simplest to debug). Otherwise a
    spawn-context process pool is used (workers may create OpenGL contexts, which a fork
    would share unsafely). A worker's exception is re-raised here after the others are
    cancelled; results committed before it stay committed.
    """
    global _ON_SCENE
    if workers <= 1 or len(jobs) <= 1:
        _ON_SCENE = lambda: bar.update(1)  # noqa: E731
        try:
            for job in jobs:
                commit(task(*job))
        finally:
            _ON_SCENE = None
        return
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    shown = 0
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(counter,))
    try:
        pending: set[Future] = {pool.submit(task, *job) for job in jobs}
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for fut in finished:
                commit(fut.result())  # re-raises a worker's error
            value = counter.value
            bar.update(value - shown)
            shown = value
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued work and end running workers now (an error or Ctrl-C should not wait for
    whole shards; their unfinished temp files are removed by the next resume)."""
    pool.shutdown(wait=False, cancel_futures=True)
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
