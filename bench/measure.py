"""Process-tree readings from /proc: peak RSS and CPU seconds of a service and its children."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """The process and all its descendants that are alive now (started by any of its threads)."""
    pids = [pid]
    for current in pids:
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pids += [int(child) for child in children.read_text().split()]
            except OSError:
                continue
    return pids


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process, including its threads (not its dead children)."""
    return stat_cpu(Path(f"/proc/{pid}/stat")) or 0.0


def stat_cpu(stat: Path) -> float | None:
    """User + system CPU seconds from a /proc stat file (a process's or a thread's); None when
    it is gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class TreeSampler:
    """Samples the tree every `interval` s: peak RSS per process and in total; CPU used.

    The tree is that of one process, or of several (`pid` a list): then all their trees together.

    `cpu` is the tree's CPU from entering to the last reading (leaving takes a final one);
    `cpu_now()` takes a reading at once, to end a window early (the load, not the drain after
    it). A process seen at the start counts from its reading there, one born later from zero;
    one that dies counts up to its last reading (at most `interval` s old).
    """

    def __init__(self, pid: int | Iterable[int], interval: float = 0.1) -> None:
        self._roots = [pid] if isinstance(pid, int) else list(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak_process_mib = 0.0
        self.peak_total_mib = 0.0
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        for pid in self._tree():
            self._cpu_start[pid] = self._cpu_last[pid] = cpu_seconds(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def cpu(self) -> float:
        """CPU seconds (user + system) the tree used from entering to the last reading."""
        with self._lock:
            return sum(self._cpu_last[p] - self._cpu_start.get(p, 0.0) for p in self._cpu_last)

    def cpu_now(self) -> float:
        """CPU seconds the tree used from entering until now: takes a reading first."""
        self._sample()
        return self.cpu

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _tree(self) -> list[int]:
        return [pid for root in self._roots for pid in tree(root)]

    def _sample(self) -> None:
        pids = self._tree()
        sizes = [rss_mib(pid) for pid in pids]
        readings = {pid: cpu_seconds(pid) for pid in pids}
        with self._lock:
            self.peak_process_mib = max(self.peak_process_mib, *sizes)
            self.peak_total_mib = max(self.peak_total_mib, sum(sizes))
            for pid, reading in readings.items():  # max: two samplers may finish out of order
                self._cpu_last[pid] = max(reading, self._cpu_last.get(pid, 0.0))
