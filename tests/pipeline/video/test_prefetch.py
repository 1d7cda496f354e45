"""Prefetch: items in order, errors raised where they happened, and a clean stop on early exit."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.video.prefetch import Prefetch


def test_items_come_in_order_and_at_most_depth_are_made_ahead():
    made = []

    def numbers():
        for i in range(10):
            made.append(i)
            yield i

    with Prefetch(numbers(), depth=2) as ahead:
        it = iter(ahead)
        assert next(it) == 0
        time.sleep(0.3)  # time for the producer to run ahead as far as it may
        assert len(made) <= 1 + 2 + 1  # the one taken, two queued, one waiting to be queued
        assert list(it) == list(range(1, 10))


def test_an_error_of_the_producer_is_raised_after_the_items_before_it():
    def failing():
        yield 1
        yield 2
        raise ValueError("broken frame")

    got = []
    with pytest.raises(ValueError, match="broken frame"), Prefetch(failing(), depth=4) as ahead:
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_leaving_early_stops_the_thread_and_closes_the_generator():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    prefetch = Prefetch(endless(), depth=1)
    with prefetch as ahead:
        for item in ahead:
            if item == 3:
                break
    assert closed.is_set() and not prefetch._thread.is_alive()
    with pytest.raises(ValueError, match="depth must be >= 1"):
        Prefetch(iter([]), depth=0)
