"""Prometheus metrics, correct across WEB_CONCURRENCY processes (prometheus_client multiprocess).

With several serving processes, the parent gives them one PROMETHEUS_MULTIPROC_DIR; each writes
its values there and any of them renders the sum for `GET /metrics`. Counters and histograms
are summed over every process that ever served; gauges that describe one process (mailbox
depth per slot, memory, CPU, open files) are shown per live process with a `pid` label, so
they add up (`sum()` over them) and each worker can be told apart; the spool, shared by all,
is the largest reading. There is no `*_created` series. Nothing here is labelled with a token,
a version or any client input.
"""

from __future__ import annotations

import contextlib
import functools
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
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.process_collector import ProcessCollector

from mailroom.tallies import ACCEPTED, REFUSED, RequestTally, TallyCollector, TallyFiles

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# A `*_created` series beside every counter and histogram doubles what is scraped and stored
# for a start time nobody queries (the multiprocess collector never writes them anyway).
disable_created_metrics()

# prometheus_client's process collector, read once a second into per-process gauges: its own
# `process_*` series are not written to the multiprocess directory, so they vanish there.
PROCESS_GAUGES = {
    "process_resident_memory_bytes": "Resident memory of this serving process, in bytes",
    "process_virtual_memory_bytes": "Virtual memory of this serving process, in bytes",
    "process_cpu_seconds": "CPU seconds (user + system) this process has used: rate() of it "
    "is the cores it keeps busy",
    "process_open_fds": "Open file descriptors of this process (sockets included)",
    "process_max_fds": "The most file descriptors this process may open",
    "process_start_time_seconds": "When this process started, in seconds since the epoch",
}


class Metrics:
    """Every metric of one process; implements the web's and the actors' observer protocols."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        counter = functools.partial(Counter, registry=registry)
        gauge = functools.partial(Gauge, registry=registry)
        histogram = functools.partial(Histogram, registry=registry)
        # Per request: counted in the process, handed to Prometheus when scraped (tallies.py).
        self.tally = RequestTally()
        directory = os.environ.get(MULTIPROC_ENV)
        self.tally_files = TallyFiles(directory, self.tally) if directory else None
        if registry is not REGISTRY or directory is None:  # else render() adds it per scrape
            registry.register(TallyCollector(self.tally))
        self.depth = gauge(
            "mailroom_mailbox_depth",
            "Payloads waiting in each uploader mailbox, per process (pid) and slot",
            ["slot"],
            multiprocess_mode="liveall",  # one series per live process and slot
        )
        self.slots_alive = gauge(
            "mailroom_uploader_slots_alive", "Uploader slots running", multiprocess_mode="livesum"
        )
        self.uploads = counter("mailroom_uploads_total", "Objects stored in S3", ["kind"])
        self.uploaded_payloads = counter(
            "mailroom_uploaded_payloads_total", "Payloads stored in S3"
        )
        self.failures = counter("mailroom_upload_failures_total", "Failed S3 puts", ["retryable"])
        self.retries = counter("mailroom_upload_retries_total", "S3 puts retried")
        self.latency = histogram(
            "mailroom_upload_seconds",
            "Time to store one object, retries included",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = histogram(
            "mailroom_batch_payloads",
            "Payloads per stored batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
        )
        self.spooled_payloads = counter(
            "mailroom_spooled_payloads_total", "Payloads written to the dead-letter spool"
        )
        self.spool_bytes = gauge(
            "mailroom_spool_bytes", "Bytes waiting in the spool", multiprocess_mode="livemax"
        )
        self.spool_files = gauge(
            "mailroom_spool_files", "Files waiting in the spool", multiprocess_mode="livemax"
        )
        self.spool_oldest_age = gauge(
            "mailroom_spool_oldest_age_seconds",
            "Age of the oldest object waiting in the spool (0 when it is empty): alert on it",
            multiprocess_mode="livemax",
        )
        self.spool_quarantined = counter(
            "mailroom_spool_quarantined_lines_total",
            "Spool lines that could not be read, moved to the quarantine directory",
        )
        self.replayed_payloads = counter(
            "mailroom_replayed_payloads_total", "Payloads replayed from the spool into S3"
        )
        self.restarts = counter(
            "mailroom_supervisor_restarts_total", "Actor restarts granted by a supervisor"
        )
        self.escalations = counter(
            "mailroom_supervisor_escalations_total",
            "Restart intensity exceeded: a supervisor escalated to its parent",
        )
        self.spool_failures = counter(
            "mailroom_spool_write_failures_total",
            "Spool writes that failed (what they held stayed in memory, retried)",
        )
        self.spool_writable = gauge(
            "mailroom_spool_writable",
            "1 if the last spool write worked (or none failed yet), 0 if it failed",
            multiprocess_mode="livemin",
        )
        self.held = gauge(
            "mailroom_payloads_held",
            "Payloads accepted and not yet durable (neither in S3 nor in the spool)",
            multiprocess_mode="livesum",
        )
        # TENANT_RATE with RATE_STORE (the rates package reports through round_trip and
        # without_store below; the gauge is sampled from its status()).
        self.rate_store_trips = counter(
            "mailroom_rate_store_round_trips_total",
            "Round trips to RATE_STORE, answered in time (ok) or not (failed)",
            ["result"],
        )
        self.rate_decisions_without_store = counter(
            "mailroom_rate_decisions_without_store_total",
            "Tenant rate decisions made without RATE_STORE while it failed (refused: "
            "RATE_STORE_FAILURE=closed)",
            ["refused"],
        )
        self.rate_store_failing = gauge(
            "mailroom_rate_store_failing",
            "1 while this process cannot reach RATE_STORE, per process (pid)",
            multiprocess_mode="liveall",
        )
        self.processes = gauge(
            "mailroom_serving_processes",
            "Serving processes alive (1 per process: their sum is the instance's count)",
            multiprocess_mode="livesum",
        )
        self.process = {
            name: gauge("mailroom_" + name, text, multiprocess_mode="liveall")
            for name, text in PROCESS_GAUGES.items()
        }
        self._process_collector = ProcessCollector(registry=None)

    # web observer
    def request_finished(self, method: str, route: str, status: int, seconds: float) -> None:
        self.tally.request(method, route, status, seconds)

    def payloads_accepted(self, count: int, tenant: str | None = None) -> None:
        self.tally.payloads(ACCEPTED, tenant, count)

    def payloads_refused(self, count: int, tenant: str | None = None) -> None:
        self.tally.payloads(REFUSED, tenant, count)

    def save_tally(self) -> None:
        """Save this process's request counts for the others' scrapes (once a second, and at
        exit)."""
        if self.tally_files is not None:
            self.tally_files.save()

    # actor observer
    def uploaded(self, payloads: int, seconds: float, batched: bool) -> None:
        self.uploads.labels("batch" if batched else "payload").inc()
        self.uploaded_payloads.inc(payloads)
        self.latency.observe(seconds)
        if batched:
            self.batch_size.observe(payloads)

    # rates observer
    def round_trip(self, ok: bool) -> None:
        self.rate_store_trips.labels("ok" if ok else "failed").inc()

    def without_store(self, refused: bool) -> None:
        self.rate_decisions_without_store.labels(str(refused).lower()).inc()

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

    def sample_every(
        self, seconds: float, read: Callable[[], dict], chore: Callable[[], None] | None = None
    ) -> threading.Thread:
        """Refresh the gauges from `read()` (the /healthz snapshot) in a daemon thread, doing
        `chore` first each time (the rate store's recheck: it may wait on the network)."""

        def loop() -> None:
            while True:
                if chore is not None:
                    with contextlib.suppress(Exception):  # it must not end the sampling
                        chore()
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
                    redis = state.get("rates", {}).get("redis")
                    if redis is not None:
                        self.rate_store_failing.set(int(redis["failing"] is not None))
                except Exception:  # a failed reading must not end the sampling
                    pass
                self.sample_process()
                with contextlib.suppress(OSError):
                    self.save_tally()
                stop.wait(seconds)

        stop = threading.Event()
        thread = threading.Thread(target=loop, name="metrics-sampler", daemon=True)
        thread.start()
        return thread

    def sample_process(self) -> None:
        """This process's memory, CPU and file descriptors into its gauges (Linux /proc)."""
        self.processes.set(1)
        try:
            for family in self._process_collector.collect():
                gauge = self.process.get(family.name)
                if gauge is not None and family.samples:
                    gauge.set(family.samples[0].value)
        except Exception:  # no /proc, or a reading that failed: the gauges keep their values
            pass


def renderer(metrics: Metrics) -> Callable[[], tuple[bytes, str]]:
    """`/metrics`: every process's values when multiprocess, else this one's."""

    def render() -> tuple[bytes, str]:
        if metrics.tally_files is None:
            return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        registry.register(TallyCollector(metrics.tally, metrics.tally_files))
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return render


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
