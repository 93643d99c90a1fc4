"""Reading ahead: results in order, at most ``depth`` pending, errors at their turn, early stop cancels the rest."""

from __future__ import annotations

import threading

import pytest

from papscreen.pipeline.prefetch import BusyClock, read_ahead


def test_results_come_in_order_from_several_threads() -> None:
    names: set[str] = set()

    def work(i: int) -> int:
        names.add(threading.current_thread().name)
        return i * 10

    assert [r for _, r in read_ahead(work, range(50), workers=3, depth=4)] == [i * 10 for i in range(50)]
    assert all(name.startswith("papscreen-reader") for name in names)


def test_no_more_than_depth_items_are_started_ahead_of_the_consumer() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started.append(i)
        return i

    reader = read_ahead(work, range(100), workers=2, depth=3)
    for consumed, (item, _) in enumerate(reader, start=1):
        # Items are submitted only as earlier ones are consumed: never more than `depth` beyond the consumer.
        assert len(started) <= consumed + 3
        assert item == consumed - 1


def test_an_error_is_raised_at_its_items_turn() -> None:
    def work(i: int) -> int:
        if i == 3:
            raise OSError("damaged tile 3")
        return i

    reader = read_ahead(work, range(10), workers=2, depth=2)
    assert [next(reader)[1] for _ in range(3)] == [0, 1, 2]
    with pytest.raises(OSError, match="damaged tile 3"):
        next(reader)


def test_stopping_early_leaves_the_rest_unread() -> None:
    calls: list[int] = []
    reader = read_ahead(calls.append, range(1000), workers=1, depth=2)
    next(reader)
    reader.close()
    assert len(calls) <= 3


def test_busy_clock_sums_time_inside_calls() -> None:
    clock = BusyClock()
    timed = clock.timed(lambda n: sum(range(n)))
    assert timed(1000) == sum(range(1000))
    assert clock.seconds > 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(read_ahead(str, [1], workers=0, depth=1))
