"""One fork-aware cache for everything that owns a GL context (scene templates, worlds + renderers).

Creating a MuJoCo GL context costs 50-500 ms while a 64x64 view costs about 1 ms, so scene
generators keep their compiled model and renderer between scenes. A :class:`GLCache` keeps them:

* **per process and per thread**: a GL context is current in one thread, and a ``fork()``ed
  child must never use its parent's contexts. Each thread of each process sees its own entries;
* **fork-aware**: the first call in a child notices the new process id and moves the inherited
  entries to a module-level list where they stay referenced for the child's lifetime. They are
  never closed there (closing a context from the child frees the parent's GL objects on some
  drivers) and never garbage-collected (a renderer's ``__del__`` would close it);
* **least recently used**: at most ``max_entries`` per thread; only entries this process built
  are ever closed.

:func:`close_all` closes the calling thread's own entries of every cache (it also runs at
interpreter exit).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

# Entries inherited through fork(), from every cache: referenced here, never closed.
_INHERITED: list = []
_CACHES: weakref.WeakSet[GLCache] = weakref.WeakSet()


def _close_value(value) -> None:
    value.close()


class GLCache(Generic[V]):
    """A keyed, per-process, per-thread LRU cache of objects holding GL contexts."""

    def __init__(self, name: str, max_entries: int, close: Callable[[V], None] = _close_value) -> None:
        """``name`` labels the cache in errors; ``close(value)`` releases one entry's GL context."""
        if max_entries < 1:
            raise ValueError(f"max_entries of GL cache {name!r} must be >= 1, got {max_entries}")
        self.name = name
        self.max_entries = int(max_entries)
        self._close = close
        self._local = threading.local()
        _CACHES.add(self)

    def _entries(self) -> OrderedDict[Hashable, V]:
        """This thread's entries, after moving any inherited from a parent process aside."""
        pid = os.getpid()
        local = self._local
        if getattr(local, "pid", None) != pid:
            old = getattr(local, "entries", None)
            if old:
                _INHERITED.extend(old.values())
            local.pid = pid
            local.entries = OrderedDict()
        return local.entries

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        """The entry of ``key``, built with ``build()`` if missing; closes the least recently used beyond the limit."""
        entries = self._entries()
        value = entries.get(key)
        if value is None or getattr(value, "closed", False):
            value = build()
            entries[key] = value
            while len(entries) > self.max_entries:
                _, oldest = entries.popitem(last=False)
                self._close(oldest)
        entries.move_to_end(key)
        return value

    def clear(self) -> None:
        """Close every entry this thread of this process built (inherited ones are left alone)."""
        entries = self._entries()
        while entries:
            _, value = entries.popitem()
            self._close(value)

    def values(self) -> list[V]:
        """This thread's own entries (none inherited), least recently used first."""
        return list(self._entries().values())


def inherited_count() -> int:
    """Number of entries this process inherited through ``fork()`` and keeps without closing."""
    for cache in list(_CACHES):
        cache._entries()  # notices a fork first
    return len(_INHERITED)


def close_all() -> None:
    """Close the calling thread's own entries of every cache."""
    for cache in list(_CACHES):
        cache.clear()


atexit.register(close_all)
