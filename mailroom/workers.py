"""WEB_CONCURRENCY > 1: N serving processes on one port, under a small parent that keeps them.

Each child is a whole `mailroom serve` (its own waitress, router, uploaders and boto3 client)
bound to the same $PORT with SO_REUSEPORT, so the kernel spreads connections over them and
every core is used despite the GIL. The parent restarts a child that dies (and logs it), and
passes SIGTERM on so that every child drains; it exits once they all have.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from types import FrameType

from config import Settings
from mailroom.metrics import MULTIPROC_ENV, process_died
from rates import prepare_box
from store.embedded import EMBEDDED_BUCKET, EmbeddedS3

log = logging.getLogger("mailroom.workers")

QUICK_EXIT_SECONDS = 10.0  # a child dying this soon after start counts towards giving up
MAX_QUICK_EXITS = 5


class WorkerPool:
    """Starts, watches and stops the serving processes."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._count = settings.web_concurrency
        self._env = dict(os.environ)
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._started: dict[int, float] = {}
        self._quick_exits: dict[int, int] = {}
        self._stopping = threading.Event()
        self._embedded: EmbeddedS3 | None = None

    def run(self) -> int:
        if self._settings.uses_embedded_store:
            self._share_embedded_store()
        metrics_dir = tempfile.TemporaryDirectory(prefix="mailroom-metrics-")
        self._env[MULTIPROC_ENV] = metrics_dir.name  # one /metrics for all children
        box = prepare_box(self._settings)  # the children's shared tenant buckets (TENANT_RATE)
        self._env.update(box.env)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        log.info(
            "starting %d serving processes on port %d (WEB_CONCURRENCY)",
            self._count,
            self._settings.port,
            extra={"event": "workers_starting", "workers": self._count},
        )
        for index in range(self._count):
            self._spawn(index)
        try:
            return self._watch()
        finally:
            if self._embedded is not None:
                self._embedded.stop()
            metrics_dir.cleanup()
            box.cleanup()

    def _share_embedded_store(self) -> None:
        self._embedded = share_embedded_store(self._settings)

    def _spawn(self, index: int) -> None:
        child = subprocess.Popen(
            [sys.executable, "-m", "mailroom", "serve", "--worker", str(index)],
            env=self._env,
        )
        self._children[index] = child
        self._started[index] = time.monotonic()
        log.info(
            "worker %d started (pid %d)",
            index,
            child.pid,
            extra={"event": "worker_started", "worker": index, "pid": child.pid},
        )

    def _watch(self) -> int:
        while not self._stopping.wait(0.2):
            for index, child in list(self._children.items()):
                code = child.poll()
                if code is None:
                    continue
                lived = time.monotonic() - self._started[index]
                process_died(child.pid, self._env[MULTIPROC_ENV])  # its live gauges
                quick = self._quick_exits[index] = (
                    self._quick_exits.get(index, 0) + 1 if lived < QUICK_EXIT_SECONDS else 0
                )
                log.error(
                    "worker %d (pid %d) exited with %s after %.1fs; restarting it",
                    index,
                    child.pid,
                    describe_exit(code),
                    lived,
                    extra={"event": "worker_died", "worker": index, "pid": child.pid},
                )
                if quick >= MAX_QUICK_EXITS:
                    log.critical(
                        "worker %d exited %d times within %.0fs of starting; giving up",
                        index,
                        quick,
                        QUICK_EXIT_SECONDS,
                        extra={"event": "workers_failing"},
                    )
                    self._stop_children()
                    return 1
                self._spawn(index)
        return self._stop_children()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping.is_set():
            log.info(
                "received %s: stopping %d workers",
                signal.Signals(signum).name,
                len(self._children),
                extra={"event": "workers_stopping"},
            )
        self._stopping.set()

    def _stop_children(self) -> int:
        """SIGTERM every child, wait for each to drain; 0 if all exited cleanly."""
        for child in self._children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._settings.shutdown_timeout + 5
        worst = 0
        for index, child in self._children.items():
            try:
                code = child.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                code = child.wait()
            if code == -signal.SIGTERM:
                # Killed by SIGTERM itself: it had not installed its handler, i.e. it was
                # still starting and had accepted nothing.
                log.info("worker %d was stopped while starting", index)
            elif code != 0:
                log.error("worker %d exited with %s", index, describe_exit(code))
                worst = 1
        log.info("all workers stopped", extra={"event": "workers_stopped"})
        return worst


def describe_exit(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def share_embedded_store(settings: Settings) -> EmbeddedS3:
    """One embedded store for all serving processes, started here; they find it on
    EMBEDDED_S3_PORT (their settings still say "no bucket": the embedded store, not a bucket)."""
    embedded = EmbeddedS3(settings.embedded_s3_port).start()
    from mailroom.wiring import open_store

    open_store(settings, start_embedded=False).store.ensure_bucket()
    log.info(
        "objects go to s3://%s/%s in the embedded S3 store at %s (in memory, gone at exit)",
        EMBEDDED_BUCKET,
        settings.s3_prefix,
        embedded.endpoint_url,
    )
    return embedded
