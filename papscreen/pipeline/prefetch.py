"""Reading ahead of compute: reader threads fill a bounded queue that the model drains in order.

Decoding a JPEG tile or a TIFF block releases the GIL (Pillow, tifffile, OpenSlide and OpenCV all do), and so
does a torch forward pass, so a couple of reader threads keep the next tiles ready while the network runs. The
queue is bounded: at most ``depth`` results wait, so memory stays the same for a field and for a gigapixel slide.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Lock
from typing import TypeVar

__all__ = ["BusyClock", "read_ahead"]

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class BusyClock:
    """Seconds spent inside timed calls, summed over threads (thread-safe)."""

    seconds: float = 0.0
    _lock: Lock = field(default_factory=Lock, repr=False)

    def timed(self, fn: Callable[[Item], Result]) -> Callable[[Item], Result]:
        """``fn`` with its run time added to this clock."""

        def run(item: Item) -> Result:
            start = time.perf_counter()
            try:
                return fn(item)
            finally:
                elapsed = time.perf_counter() - start
                with self._lock:
                    self.seconds += elapsed

        return run


def read_ahead(
    fn: Callable[[Item], Result], items: Iterable[Item], *, workers: int, depth: int
) -> Iterator[tuple[Item, Result]]:
    """Yield ``(item, fn(item))`` in the order of ``items``, computed by ``workers`` threads ahead of the consumer.

    At most ``depth`` calls are queued or finished-but-unconsumed at any time. An exception in ``fn`` is raised
    when its item's turn comes; closing the iterator early cancels what has not started.

    Examples:
        >>> [r for _, r in read_ahead(lambda x: x * x, range(5), workers=2, depth=2)]
        [0, 1, 4, 9, 16]
    """
    if workers < 1 or depth < 1:
        raise ValueError(f"workers and depth must be at least 1, got {workers} and {depth}")
    pending: deque[tuple[Item, Future[Result]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="papscreen-reader") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= depth:
                    first, future = pending.popleft()
                    yield first, future.result()
            while pending:
                first, future = pending.popleft()
                yield first, future.result()
        finally:
            for _, future in pending:
                future.cancel()
