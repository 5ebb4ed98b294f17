"""Process-tree readings from /proc: peak RSS and CPU seconds of a service and its children."""

from __future__ import annotations

import os
import threading
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """The process and all its descendants that are alive now."""
    pids = [pid]
    for current in pids:
        try:
            text = Path(f"/proc/{current}/task/{current}/children").read_text()
        except OSError:
            continue
        pids += [int(child) for child in text.split()]
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
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class TreeSampler:
    """Samples the tree every `interval` s: peak RSS per process and in total; CPU used."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self.peak_process_mib = 0.0
        self.peak_total_mib = 0.0
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        for pid in tree(self._pid):
            self._cpu_start[pid] = self._cpu_last[pid] = cpu_seconds(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def cpu(self) -> float:
        return sum(self._cpu_last[p] - self._cpu_start.get(p, 0.0) for p in self._cpu_last)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        pids = tree(self._pid)
        sizes = [rss_mib(pid) for pid in pids]
        self.peak_process_mib = max(self.peak_process_mib, *sizes)
        self.peak_total_mib = max(self.peak_total_mib, sum(sizes))
        for pid in pids:
            reading = cpu_seconds(pid)
            if reading:
                self._cpu_last[pid] = reading
