"""Prometheus metrics, correct across WEB_CONCURRENCY processes (prometheus_client multiprocess).

With several serving processes, the parent gives them one PROMETHEUS_MULTIPROC_DIR; each writes
its values there and any of them renders the sum for `GET /metrics`. Gauges that describe
one process (mailbox depth) are summed over live processes; the spool, shared by all, is the
largest reading. Nothing here is labelled with a token, a version or any client input.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """Every metric of one process; implements the web's and the actors' observer protocols."""

    def __init__(self) -> None:
        self.requests = Counter(
            "mailroom_http_requests_total", "HTTP answers", ["method", "route", "status"]
        )
        self.accepted = Counter("mailroom_payloads_accepted_total", "Payloads accepted")
        self.refused = Counter("mailroom_payloads_refused_total", "Payloads refused with 503")
        self.depth = Gauge(
            "mailroom_mailbox_depth",
            "Payloads waiting in each uploader mailbox",
            ["slot"],
            multiprocess_mode="livesum",
        )
        self.slots_alive = Gauge(
            "mailroom_uploader_slots_alive", "Uploader slots running", multiprocess_mode="livesum"
        )
        self.uploads = Counter("mailroom_uploads_total", "Objects stored in S3", ["kind"])
        self.uploaded_payloads = Counter(
            "mailroom_uploaded_payloads_total", "Payloads stored in S3"
        )
        self.failures = Counter("mailroom_upload_failures_total", "Failed S3 puts", ["retryable"])
        self.retries = Counter("mailroom_upload_retries_total", "S3 puts retried")
        self.latency = Histogram(
            "mailroom_upload_seconds",
            "Time to store one object, retries included",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = Histogram(
            "mailroom_batch_payloads",
            "Payloads per stored batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
        )
        self.spooled_payloads = Counter(
            "mailroom_spooled_payloads_total", "Payloads written to the dead-letter spool"
        )
        self.spool_bytes = Gauge(
            "mailroom_spool_bytes", "Bytes waiting in the spool", multiprocess_mode="livemax"
        )
        self.spool_files = Gauge(
            "mailroom_spool_files", "Files waiting in the spool", multiprocess_mode="livemax"
        )
        self.spool_oldest_age = Gauge(
            "mailroom_spool_oldest_age_seconds",
            "Age of the oldest object waiting in the spool (0 when it is empty): alert on it",
            multiprocess_mode="livemax",
        )
        self.spool_quarantined = Counter(
            "mailroom_spool_quarantined_lines_total",
            "Spool lines that could not be read, moved to the quarantine directory",
        )
        self.replayed_payloads = Counter(
            "mailroom_replayed_payloads_total", "Payloads replayed from the spool into S3"
        )
        self.restarts = Counter(
            "mailroom_supervisor_restarts_total", "Actor restarts granted by a supervisor"
        )
        self.escalations = Counter(
            "mailroom_supervisor_escalations_total",
            "Restart intensity exceeded: a supervisor escalated to its parent",
        )
        self.spool_failures = Counter(
            "mailroom_spool_write_failures_total",
            "Spool writes that failed (what they held stayed in memory, retried)",
        )
        self.spool_writable = Gauge(
            "mailroom_spool_writable",
            "1 if the last spool write worked (or none failed yet), 0 if it failed",
            multiprocess_mode="livemin",
        )
        self.held = Gauge(
            "mailroom_payloads_held",
            "Payloads accepted and not yet durable (neither in S3 nor in the spool)",
            multiprocess_mode="livesum",
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}

    # web observer
    def request_done(self, method: str, route: str, status: int) -> None:
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:  # labels() costs a few microseconds: once per combination
            child = self._request_children[key] = self.requests.labels(method, route, str(status))
        child.inc()

    def payloads_accepted(self, count: int) -> None:
        self.accepted.inc(count)

    def payloads_refused(self, count: int) -> None:
        self.refused.inc(count)

    # actor observer
    def uploaded(self, payloads: int, seconds: float, batched: bool) -> None:
        self.uploads.labels("batch" if batched else "payload").inc()
        self.uploaded_payloads.inc(payloads)
        self.latency.observe(seconds)
        if batched:
            self.batch_size.observe(payloads)

    def upload_failed(self, retryable: bool) -> None:
        self.failures.labels(str(retryable).lower()).inc()

    def upload_retried(self) -> None:
        self.retries.inc()

    def spooled(self, payloads: int) -> None:
        self.spooled_payloads.inc(payloads)

    def spool_failed(self) -> None:
        self.spool_failures.inc()

    def replay_progressed(self, landed: int, quarantined: int) -> None:
        self.replayed_payloads.inc(landed)
        self.spool_quarantined.inc(quarantined)

    def restarted(self) -> None:
        self.restarts.inc()

    def escalated(self) -> None:
        self.escalations.inc()

    def sample_every(self, seconds: float, read: Callable[[], dict]) -> threading.Thread:
        """Refresh the gauges from `read()` (the /healthz snapshot) in a daemon thread."""

        def loop() -> None:
            while True:
                try:
                    state = read()
                    for slot in state["slots"]:
                        self.depth.labels(str(slot["slot"])).set(slot["depth"])
                    self.slots_alive.set(state["slots_alive"])
                    self.spool_files.set(state["spool"]["files"])
                    self.spool_bytes.set(state["spool"]["bytes"])
                    self.spool_oldest_age.set(state["spool"]["oldest_age_seconds"] or 0)
                    self.spool_writable.set(int(state["spool"]["writable"]))
                    self.held.set(state["held"])
                except Exception:  # a failed reading must not end the sampling
                    pass
                stop.wait(seconds)

        stop = threading.Event()
        thread = threading.Thread(target=loop, name="metrics-sampler", daemon=True)
        thread.start()
        return thread


def render() -> tuple[bytes, str]:
    """The exposition text: every process's values when multiprocess, else this one's."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_died(pid: int, directory: str) -> None:
    """Drop a dead child's live gauges (called by the parent of a WorkerPool)."""
    prometheus_multiprocess.mark_process_dead(pid, directory)


def forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of every process that is gone (a granian worker, at its start:
    granian respawns a dead worker without telling anyone its pid)."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            process_died(pid, directory)
        except PermissionError:
            continue
