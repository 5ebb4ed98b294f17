"""Helpers shared by tests: free ports, fake stores, a service process, polling with a deadline."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import requests

from actors import Collection
from store import S3Object
from store.spool import DeadLetterSpool, Destination

ROOT = Path(__file__).resolve().parent.parent
_collection_ids = itertools.count()


def collection(
    *documents: Any, version: str = "1", tenant: str | None = None, received_at: float = 0.0
) -> Collection:
    """A collection as the dispatcher makes one, with a short id of its own (c0, c1, ...)."""
    return Collection(
        f"c{next(_collection_ids)}", version, received_at, tuple(documents), tenant=tenant
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.05) -> Any:
    """Poll until `condition()` is truthy and return it; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class RecordingStore:
    """A store that keeps what it is given in memory, keyed as the real one is."""

    def __init__(self) -> None:
        self.saved: dict[str, Any] = {}
        self.markers: dict[str, float] = {}
        self.puts = 0
        self._lock = threading.Lock()

    def encode(self, document: Any) -> bytes:
        return orjson.dumps(document)

    def encode_all(self, documents: Any) -> list[bytes]:
        return [self.encode(document) for document in documents]

    def object_for(
        self,
        document: Any,
        *,
        version: str,
        received_at: float,
        unique: str,
        tenant: str | None = None,
    ) -> S3Object:
        where = f"{tenant}/" if tenant else ""
        return S3Object(f"{where}{version}/{unique}", orjson.dumps(document))

    def partitions(self, documents: Any) -> None:
        return None

    def first_accepted(self, marker: str, received_at: float) -> float:
        with self._lock:
            return self.markers.setdefault(marker, received_at)

    def marker_object(self, marker: str, received_at: float) -> S3Object:
        return S3Object(f"markers/{marker}", orjson.dumps(received_at), payloads=0)

    def batch_object(
        self,
        lines: list[bytes],
        *,
        version: str,
        received_at: float,
        unique: str,
        gzipped: bool,
        tenant: str | None = None,
        partition: Any = None,
        rows: Any = None,
    ) -> S3Object:
        where = f"{tenant}/" if tenant else ""
        body = b"\n".join(lines) + b"\n"
        return S3Object(f"{where}{version}/batch-{unique}", body, len(lines))

    def put(self, obj: S3Object) -> None:
        lines = obj.body.splitlines()
        with self._lock:
            self.puts += 1
            if "/batch-" in obj.key:
                self.saved[obj.key] = [orjson.loads(line) for line in lines]
            else:
                self.saved[obj.key] = orjson.loads(obj.body)


class ServiceProcess:
    """The real service (`python -m mailroom serve`) on a loopback port, stopped by SIGTERM."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = {**os.environ, "PORT": str(self.port), "LOG_LEVEL": "INFO", **env}
        self.proc: subprocess.Popen[str] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30, *, ready: bool = True) -> ServiceProcess:
        """Start it (in a process group of its own, as a dyno's processes are: `signal_all`
        signals every process of it); wait until it answers, unless `ready` is False."""
        self._output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailroom", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        if ready:
            wait_for(self._ready, timeout=timeout, interval=0.1)
        return self

    def signal_all(self, signum: int) -> None:
        """Signal every process of the service at once, as Heroku does at a dyno's stop (and a
        terminal at Ctrl-C): each worker gets it beside what its parent passes on."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signum)

    def log(self) -> str:
        """Everything the service has logged so far."""
        self._output.seek(0)
        return self._output.read()

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"service exited at start:\n{self.log()}")
        try:
            requests.get(self.url + "/payloads", timeout=1)
        except requests.ConnectionError:
            return False
        return True

    def stop(self, timeout: float = 30, *, signal_it: bool = True) -> tuple[int, str]:
        """SIGTERM (unless already sent), wait; return the exit code and what the service logged."""
        assert self.proc is not None
        if signal_it and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"service did not stop within {timeout}s:\n{self.log()}") from None
        output = self.log()
        self._output.close()
        return self.proc.returncode, output


class GatedStore(RecordingStore):
    """A store whose uploads of documents carrying {"gate": name} wait until that gate opens.

    A document carrying {"boom": true} makes encoding it raise as a bug would (crashing the
    uploader's behaviour, not S3); {"crash_times": n} does so only the first n times that
    document is encoded. `seen` counts encodings per key, `entered` puts begun.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[str, threading.Event] = {}
        self.entered = 0
        self.thread_of: dict[str, str] = {}
        self.seen: dict[str, int] = {}
        self.opened = False

    def gate(self, name: str) -> threading.Event:
        with self._lock:
            return self.gates.setdefault(name, threading.Event())

    def open_all(self) -> None:
        self.opened = True
        with self._lock:
            for event in self.gates.values():
                event.set()

    def object_for(
        self,
        document: Any,
        *,
        version: str,
        received_at: float,
        unique: str,
        tenant: str | None = None,
    ) -> S3Object:
        obj = super().object_for(
            document, version=version, received_at=received_at, unique=unique, tenant=tenant
        )
        self._maybe_crash(document, obj.key)
        return obj

    def encode(self, document: Any) -> bytes:
        self._maybe_crash(document, str(document))
        return super().encode(document)

    def _maybe_crash(self, document: Any, key: str) -> None:
        with self._lock:
            self.seen[key] = seen = self.seen.get(key, 0) + 1
        if document.get("boom") or seen <= document.get("crash_times", 0):
            raise RuntimeError(f"injected bug while encoding {key}")

    def put(self, obj: S3Object) -> None:
        with self._lock:
            self.entered += 1
            self.thread_of[obj.key] = threading.current_thread().name
        if not self.opened and b'"gate"' in obj.body:
            for document in _documents(obj.body):
                if "gate" in document:
                    self.gate(document["gate"]).wait(timeout=30)
        super().put(obj)


def _documents(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


class FlakyStore(RecordingStore):
    """S3 that fails every put while `down` (retryably, as a 503 would), and counts attempts."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.attempts = 0

    def put(self, obj: S3Object) -> None:
        with self._lock:
            self.attempts += 1
        if self.down:
            from store import StoreError

            raise StoreError(obj.key, "S3 answered 503 SlowDown", retryable=True)
        super().put(obj)


class BrokenSpool:
    """A spool whose writes fail like a full disk while `broken`; else a real spool."""

    def __init__(self, directory: Path) -> None:
        self.real = DeadLetterSpool(directory, ANYWHERE)
        self.broken = False
        self.failures = 0

    def write(self, objects: list[S3Object], *, reason: str) -> Path | None:
        if self.broken:
            self.failures += 1
            raise OSError(28, "No space left on device")
        return self.real.write(objects, reason=reason)

    def keys(self) -> list[str]:
        return [obj.key for obj in self.real.waiting()]


# Where a spool in a test says its objects go, when no service replays it.
ANYWHERE = Destination("test", "test-bucket", "payloads/")


def sink_destination(sink: Any) -> Destination:
    """The destination a service run with `sink_env(sink, ...)` uploads to (and replays)."""
    return Destination(sink.endpoint, "sink", "payloads/")


def sink_env(sink: Any, spool_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a service process that uploads to an S3Sink and spools to `spool_dir`."""
    return {
        "S3_BUCKET": "sink",
        "AWS_ENDPOINT_URL_S3": sink.endpoint,
        "AWS_ACCESS_KEY_ID": "sink",
        "AWS_SECRET_ACCESS_KEY": "sink",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SPOOL_DIR": str(spool_dir),
        # The start check writes a probe object; tests that count objects do not want it
        # (tests/test_start_checks.py turns it on).
        "S3_CHECK": "off",
        **extra,
    }


SINK_CREDENTIALS = {"aws_access_key_id": "k", "aws_secret_access_key": "s"}


def sink_store(sink: Any, **layout: Any) -> Any:
    """A real S3Store writing to an S3Sink (bucket `sink`, prefix `payloads/`), with any
    layout setting of `open_s3` (partitioner, batch_format, error_prefix, ...)."""
    from store import open_s3

    return open_s3(
        bucket="sink",
        prefix="payloads/",
        pool_size=4,
        endpoint_url=sink.endpoint,
        credentials=SINK_CREDENTIALS,
        region="us-east-1",
        **layout,
    )


def post_collections(
    url: str, collections: list[list[dict[str, Any]]], *, clients: int = 4, timeout: float = 10
) -> list[tuple[int, list[dict[str, Any]]]]:
    """POST each collection once from `clients` threads; return (status, data) for each."""
    from concurrent.futures import ThreadPoolExecutor

    session = threading.local()

    def send(data: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        if not hasattr(session, "http"):
            session.http = requests.Session()
        try:
            answer = session.http.post(
                url + "/payloads",
                json={"version": "1", "token": "t", "data": data},
                timeout=timeout,
            )
        except requests.RequestException:
            return 0, data
        return answer.status_code, data

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(send, collections))


def replay_spool(env: dict[str, str]) -> str:
    """Run `mailroom replay` as an operator would, with `env` over this one's; it must exit
    0; returns what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "mailroom", "replay"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
