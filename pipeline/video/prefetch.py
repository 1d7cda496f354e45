"""Items of an iterator produced ahead by a thread, so that producing the next one (decoding
a video frame: PyAV releases the GIL) overlaps with using this one (detection, face mesh).

Without it an analysis worker leaves its core to others whenever it waits on one of the
two. On 2 cores, where the other processes already fill most of those gaps, the measured
gain was within run-to-run noise (BENCHMARKS.md).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()


class Prefetch(Generic[T]):
    """Iterate ``items`` with up to ``depth`` of them produced ahead in a thread.

    Use it as a context manager: leaving it (a break, an error) stops and joins the thread,
    so that whatever ``items`` reads from can be closed safely afterwards. An exception
    raised by ``items`` is raised here, at the point of the item it prevented.

    >>> with Prefetch(iter(range(3)), depth=2) as numbers:
    ...     list(numbers)
    [0, 1, 2]
    """

    def __init__(self, items: Iterator[T], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((_END, exc))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()  # a generator is closed in the thread that ran it

    def __enter__(self) -> Prefetch[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def __iter__(self) -> Iterator[T]:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
