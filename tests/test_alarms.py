"""The batch deadlines' clock: one thread, callbacks in time order, cancelled ones never."""

from __future__ import annotations

import threading

from actors.alarms import Alarms
from tests.support import wait_for


def test_callbacks_come_in_time_order_and_cancelled_ones_never() -> None:
    alarms = Alarms()
    fired: list[str] = []
    try:
        alarms.set(0.2, lambda: fired.append("late"))
        early = alarms.set(0.05, lambda: fired.append("cancelled"))
        alarms.set(0.1, lambda: fired.append("soon"))
        alarms.cancel(early)
        wait_for(lambda: len(fired) == 2, timeout=5, interval=0.01)
    finally:
        alarms.stop()
    assert fired == ["soon", "late"]


def test_many_cancelled_deadlines_take_neither_threads_nor_room() -> None:
    alarms = Alarms()
    before = threading.active_count()
    try:
        for _ in range(10_000):
            alarms.cancel(alarms.set(60, lambda: None))
        assert len(alarms) == 0 and len(alarms._heap) <= 64
        assert threading.active_count() <= before + 1
    finally:
        alarms.stop()
