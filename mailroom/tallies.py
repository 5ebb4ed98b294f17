"""Per-request metrics counted in the process and handed to Prometheus only when scraped.

prometheus_client's multiprocess values write a memory-mapped file under a lock on every
`inc()` and `observe()`; a request made four of them. Here a request costs a few dictionary
and list operations: `RequestTally` keeps the counts in memory, each process saves them to
`requests_<pid>.json` in the metrics directory once a second (and when it stops), and the
collector renders the sum of every process's file (its own counts live) when `/metrics` is
read. As with the multiprocess mode, a process that exited keeps its counts in the sum; other
processes' counts are at most a second old.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# Time in the app per request: most answers take well under a millisecond; a `stored`
# acknowledgement waits for S3 (up to STORED_ACK_TIMEOUT), a slow body for its client.
REQUEST_SECONDS_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
REQUESTS = "mailroom_http_requests_total"
DURATION = "mailroom_http_request_duration_seconds"
ACCEPTED = "mailroom_payloads_accepted_total"
REFUSED = "mailroom_payloads_refused_total"
FILE_PREFIX = "requests_"


class RequestTally:
    """Counts and times answers by (method, route, status); payloads by tenant. Safe from any
    thread (one short lock: waitress answers in several threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (method, route, status) -> [count, seconds, then one count per bucket and +Inf]
        self._requests: dict[tuple[str, str, int], list[float]] = {}
        self._payloads: dict[tuple[str, str], int] = {}  # (metric, tenant) -> payloads

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        bucket = bisect.bisect_left(REQUEST_SECONDS_BUCKETS, seconds)
        with self._lock:
            row = self._requests.get(key)
            if row is None:
                row = self._requests[key] = [0, 0.0] + [0] * (len(REQUEST_SECONDS_BUCKETS) + 1)
            row[0] += 1
            row[1] += seconds
            row[2 + bucket] += 1

    def payloads(self, metric: str, tenant: str | None, count: int) -> None:
        key = (metric, tenant or "none")
        with self._lock:
            self._payloads[key] = self._payloads.get(key, 0) + count

    def snapshot(self) -> dict[str, Any]:
        """The counts so far, as plain data (what a process saves for the others to read)."""
        with self._lock:
            return {
                "requests": [[*key, *row] for key, row in self._requests.items()],
                "payloads": [[*key, count] for key, count in self._payloads.items()],
            }


class TallyFiles:
    """This process's saved counts in the shared metrics directory, and everyone's."""

    def __init__(self, directory: str | Path, tally: RequestTally) -> None:
        self.directory = Path(directory)
        self._tally = tally
        self._pid = os.getpid()
        self._path = self.directory / f"{FILE_PREFIX}{self._pid}.json"
        if self._path.exists():  # an earlier process had this pid: keep its counts in the sum
            self._path.rename(
                self.directory / f"{FILE_PREFIX}{self._pid}-{os.urandom(4).hex()}.json"
            )

    def save(self) -> None:
        """Replace this process's file at once (a reader never sees half of it)."""
        temporary = self._path.with_suffix(".tmp")
        temporary.write_bytes(orjson.dumps(self._tally.snapshot()))
        os.replace(temporary, self._path)

    def everyone(self) -> Iterator[dict[str, Any]]:
        """Every process's counts: this one's live, the others' as last saved."""
        yield self._tally.snapshot()
        for path in self.directory.glob(f"{FILE_PREFIX}*.json"):
            if path == self._path:
                continue
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                yield orjson.loads(path.read_bytes())


class TallyCollector(Collector):
    """Renders the tallies as Prometheus counters and a histogram, summed over processes."""

    def __init__(self, tally: RequestTally, files: TallyFiles | None = None) -> None:
        self._tally = tally
        self._files = files

    def collect(self) -> Iterator[Metric]:
        snapshots = self._files.everyone() if self._files else [self._tally.snapshot()]
        requests: dict[tuple[str, str, str], list[float]] = {}
        payloads: dict[tuple[str, str], int] = {}
        for snapshot in snapshots:
            for method, route, status, *row in snapshot["requests"]:
                total = requests.setdefault((method, route, str(status)), [0.0] * len(row))
                for index, value in enumerate(row):
                    total[index] += value
            for metric, tenant, count in snapshot["payloads"]:
                payloads[(metric, tenant)] = payloads.get((metric, tenant), 0) + count
        labels = ["method", "route", "status"]
        answers = CounterMetricFamily(
            REQUESTS.removesuffix("_total"), "HTTP answers", labels=labels
        )
        duration = HistogramMetricFamily(
            DURATION,
            "Time in the app per request, from its headers to its answer (body read included)",
            labels=labels,
        )
        for key, (count, seconds, *buckets) in sorted(requests.items()):
            answers.add_metric(key, count)
            cumulative, running = [], 0.0
            for bound, in_bucket in zip(
                (*REQUEST_SECONDS_BUCKETS, float("inf")), buckets, strict=True
            ):
                running += in_bucket
                cumulative.append((_bound(bound), running))
            duration.add_metric(key, cumulative, seconds)
        yield answers
        yield duration
        for name, text in (
            (ACCEPTED, "Payloads accepted"),
            (REFUSED, "Payloads refused (429 or 503)"),
        ):
            family = CounterMetricFamily(name.removesuffix("_total"), text, labels=["tenant"])
            for (metric, tenant), count in sorted(payloads.items()):
                if metric == name:
                    family.add_metric([tenant], count)
            yield family


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
