"""Per box: the serving processes of one `mailroom serve` share one bucket per tenant.

The main process creates a small file before it starts its workers (`make_box_file`, called
through `rates.build.prepare_box`) and names it in the environment (MAILROOM_RATES_FILE), as it
does the metrics directory; each worker, forked by granian or started as a fresh
`python -m mailroom serve --worker i` under waitress, maps it (`BoxRates.attach`). Tenants are
configured, a bounded set, so the file has one fixed 8-byte slot per tenant (plus one for plain
tokens) holding the bucket's GCRA arrival time on CLOCK_MONOTONIC, which every process of a
host reads alike. Each decision locks its slot's byte range (`lockf`: owned by the process, so
a forked child never shares its parent's lock) and, within the process, a thread lock: a few
microseconds, no process in the middle.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import shutil
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rates import gcra
from rates.limiter import slot_name
from rates.local import LocalRates

ENV = "MAILROOM_RATES_FILE"
MAGIC = b"MRRATES1"
HEADER = struct.Struct("<8sII")  # magic, bytes before the first slot, slots
SLOT = struct.Struct("<d")  # the bucket's theoretical arrival time; 0.0: full
ALIGN = 4096


class BoxFileError(RuntimeError):
    """The shared file is missing or not one of ours; the message is one line."""


@dataclass
class BoxFile:
    """What the main process holds: the variables its workers need, and the cleanup."""

    path: str | None
    env: dict[str, str] = field(default_factory=dict)
    _directory: str | None = None

    def cleanup(self) -> None:
        """Remove the file once every worker has exited (a worker still mapping it is fine)."""
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def __enter__(self) -> BoxFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def make_box_file(tenants: Iterable[str], rate: float, directory: str | None = None) -> BoxFile:
    """In the main process, before any worker starts: create the shared file for `tenants`
    (plain tokens always get a slot). With no rate there is nothing to share: no file."""
    if rate <= 0:
        return BoxFile(path=None)
    folder = tempfile.mkdtemp(prefix="mailroom-rates-", dir=directory)
    path = os.path.join(folder, "buckets")
    create_file(path, [None, *tenants])
    return BoxFile(path=path, env={ENV: path}, _directory=folder)


def create_file(path: str, tenants: Iterable[str | None]) -> None:
    """Write a file of full buckets, one slot per tenant, its names in the header."""
    names = list(dict.fromkeys(slot_name(t) for t in tenants))
    described = json.dumps({"tenants": names}).encode()
    start = -(-(HEADER.size + len(described)) // ALIGN) * ALIGN
    with open(path, "wb") as out:
        out.write(HEADER.pack(MAGIC, start, len(names)) + described)
        out.truncate(start + SLOT.size * len(names))


class BoxRates:
    """A limiter over the shared file. Safe from any thread and across fork."""

    store = "box"

    def __init__(
        self, path: str, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.path = path
        self._clock = clock
        try:
            self._fd = os.open(path, os.O_RDWR)
        except OSError as error:
            raise BoxFileError(f"cannot open the shared rate file {path}: {error}") from None
        try:
            self._map = mmap.mmap(self._fd, 0)
            self._start, self._slots = _read_header(self._map, path)
            self._index = {name: i for i, name in enumerate(_names(self._map, self._start))}
        except BaseException:
            os.close(self._fd)
            raise
        self._locks = [threading.Lock() for _ in range(self._slots)]
        self._strays = LocalRates(rate, burst, clock)  # a tenant the file was not made for
        _OPEN.add(self)

    @classmethod
    def attach(cls, environ: Mapping[str, str], rate: float, burst: int) -> BoxRates | None:
        """In a worker: the box's shared buckets, or None when the main process shared none."""
        path = environ.get(ENV)
        return cls(path, rate, burst) if path else None

    def take(self, tenant: str | None, payloads: int) -> float:
        index = self._index.get(slot_name(tenant))
        if index is None:
            return self._strays.take(tenant, payloads)
        offset = self._start + index * SLOT.size
        with self._locks[index]:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, SLOT.size, offset)
            try:
                (tat,) = SLOT.unpack_from(self._map, offset)
                step = gcra.take(tat, self._clock(), payloads, self.rate, self.burst)
                if step.wait == 0.0:
                    SLOT.pack_into(self._map, offset, step.tat)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, SLOT.size, offset)
        return step.wait

    take_now = take  # never waits on the network

    def give_back(self, tenant: str | None, payloads: int) -> None:
        index = self._index.get(slot_name(tenant))
        if index is None:
            self._strays.give_back(tenant, payloads)
            return
        offset = self._start + index * SLOT.size
        with self._locks[index]:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, SLOT.size, offset)
            try:
                (tat,) = SLOT.unpack_from(self._map, offset)
                tat = gcra.give_back(tat, self._clock(), payloads, self.rate)
                SLOT.pack_into(self._map, offset, tat)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, SLOT.size, offset)

    def status(self) -> dict[str, Any]:
        return {"store": self.store, "in_force": self.store, "rate": self.rate, "burst": self.burst}

    def recheck(self) -> None:
        return None  # nothing to fail

    def close(self) -> None:
        _OPEN.discard(self)
        self._map.close()
        os.close(self._fd)

    def _after_fork(self) -> None:
        """A fork may copy a thread lock held by another thread: the child starts afresh."""
        self._locks = [threading.Lock() for _ in range(self._slots)]
        self._strays = LocalRates(self.rate, self.burst, self._clock)


def _read_header(view: mmap.mmap, path: str) -> tuple[int, int]:
    if len(view) < HEADER.size:
        raise BoxFileError(f"{path} is not a mailroom rate file (too short)")
    magic, start, slots = HEADER.unpack_from(view, 0)
    if magic != MAGIC or len(view) < start + slots * SLOT.size:
        raise BoxFileError(f"{path} is not a mailroom rate file")
    return start, slots


def _names(view: mmap.mmap, start: int) -> list[str]:
    raw = bytes(view[HEADER.size : start]).rstrip(b"\0")
    return list(json.loads(raw)["tenants"])


_OPEN: weakref.WeakSet[BoxRates] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for rates in list(_OPEN):
        rates._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
