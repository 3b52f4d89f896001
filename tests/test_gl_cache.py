"""The one fork-aware GL cache (envs.scenes.gl_cache) behind every scene generator, across a real fork."""

from __future__ import annotations

import gc
import multiprocessing as mp

import numpy as np
import pytest

import envs  # noqa: F401  (sets MUJOCO_GL)
from envs.scenes import generate_scene
from envs.scenes.gl_cache import GLCache, inherited_count

SOURCES = {
    "rooms": {"camera": "free"},
    "shepard-metzler": {"parts": 5},
    "jaco": {},
    "maze": {},
}


def _render_all(size: int = 24) -> dict[str, np.ndarray]:
    return {
        src: generate_scene(src, seed=3, index=1, views=2, size=size, **opts).frames for src, opts in SOURCES.items()
    }


def _child(parent_renderers: set[int], queue) -> None:
    """Render every family, then overflow the canvas cache (its LRU closes entries); report inherited closes."""
    import mujoco

    closed_inherited: list[str] = []
    original = mujoco.Renderer.close

    def spy(self) -> None:
        if id(self) in parent_renderers and getattr(self, "_gl_context", None) is not None:
            closed_inherited.append(type(self).__name__)
        original(self)

    mujoco.Renderer.close = spy
    try:
        frames = _render_all()
        for size in (16, 17):  # 4 more canvases (6 in all): only the child's own may be closed
            generate_scene("rooms", seed=0, index=0, views=1, size=size)
            generate_scene("shepard-metzler", seed=0, index=0, views=1, size=size)
        from envs.scenes.canvas import close_canvases

        close_canvases()
        gc.collect()
        ok = all(f.std() > 3.0 for f in frames.values())
        queue.put((ok, len(closed_inherited), inherited_count()))
    except Exception as err:  # pragma: no cover - reported to the parent
        queue.put((False, -1, repr(err)))


def test_child_of_fork_never_closes_parent_contexts_and_parent_renders_the_same():
    import mujoco

    before = _render_all()
    gc.collect()
    parent_renderers = {id(o) for o in gc.get_objects() if type(o) is mujoco.Renderer}
    assert len(parent_renderers) >= len(SOURCES)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(parent_renderers, queue))
    proc.start()
    ok, closed, inherited = queue.get(timeout=120)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert ok, inherited
    assert closed == 0, f"the child closed {closed} GL renderers it inherited from its parent"
    assert inherited >= len(SOURCES)
    after = _render_all()
    for src in SOURCES:
        np.testing.assert_array_equal(after[src], before[src], err_msg=src)


class _Thing:
    def __init__(self, log: list, name: str) -> None:
        self.log, self.name, self.closed = log, name, False

    def close(self) -> None:
        self.closed = True
        self.log.append(self.name)


def test_lru_closes_only_its_own_least_recently_used_entries():
    log: list[str] = []
    cache: GLCache[_Thing] = GLCache("test", max_entries=2)
    a = cache.get("a", lambda: _Thing(log, "a"))
    cache.get("b", lambda: _Thing(log, "b"))
    assert cache.get("a", lambda: _Thing(log, "a2")) is a  # hit: "a" is now most recent
    cache.get("c", lambda: _Thing(log, "c"))
    assert log == ["b"] and [t.name for t in cache.values()] == ["a", "c"]
    a.close()  # an entry closed from outside is rebuilt
    assert cache.get("a", lambda: _Thing(log, "a3")).name == "a3"
    cache.clear()
    assert cache.values() == [] and sorted(log) == ["a", "a3", "b", "c"]
    with pytest.raises(ValueError, match="max_entries of GL cache 'bad' must be >= 1"):
        GLCache("bad", 0)


def test_cache_entries_are_per_thread():
    import threading

    cache: GLCache[_Thing] = GLCache("threads", max_entries=4)
    mine = cache.get("k", lambda: _Thing([], "main"))
    seen = []
    t = threading.Thread(target=lambda: seen.append(cache.get("k", lambda: _Thing([], "worker"))))
    t.start()
    t.join()
    assert seen[0] is not mine and seen[0].name == "worker"
    assert cache.get("k", lambda: _Thing([], "again")) is mine
