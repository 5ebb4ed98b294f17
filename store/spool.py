"""The dead-letter spool: objects that could not be uploaded, kept on local disk until replayed.

Each write is one file of JSON lines (one object per line), written to a hidden temporary
name, fsynced, renamed into place and the directory fsynced: after `write` returns, the
objects survive a crash or a power cut. Only visible `*.spool` files are spool files, so a
write torn half way (disk full, a crash) is never read as one.

Replay claims a file by renaming it, so two processes sharing the directory never replay the
same file at once; a line that cannot be read is moved aside to `quarantine/` rather than
blocking the rest (`store/replay.py` does the uploading).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from store.objects import S3Object
from store.quarantine import Quarantine
from store.spool_format import (
    CLAIM,
    SUFFIX,
    TEMPORARY,
    Destination,
    age,
    destination_of_line,
    encode_line,
    read_file,
    read_line,
    spooled_at,
    writer_pid,
)

log = logging.getLogger(__name__)

QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class Footprint:
    """What waits in the spool, from the directory listing alone (cheap enough per scrape)."""

    files: int
    bytes: int
    oldest_age: float | None  # seconds since the oldest waiting file's objects were spooled


@dataclass(frozen=True, slots=True)
class Census:
    """What waits in the spool, read from the files."""

    files: int
    objects: int
    payloads: int
    bytes: int
    oldest_age: float | None
    elsewhere: dict[str, int]  # objects bound for other destinations, by destination


@dataclass(frozen=True, slots=True)
class Claimed:
    """A spool file this process renamed to itself and holds a lock on (flock): nobody else
    replays it meanwhile, and once this process is gone, by any death, the lock is too."""

    path: Path
    spooled_at: int  # time.time_ns() of the first write of its objects
    objects: list[S3Object]
    quarantined: int  # lines that could not be read, moved aside
    lock: int  # the open file descriptor holding the flock


class DeadLetterSpool:
    """Durable, append-only storage of S3 objects on local disk, for one destination.

    Every line records the destination it was written for; `claim` takes only files for
    this spool's own destination, so objects spooled while pointed at one bucket are never
    replayed into another (unless `any_destination` says so on purpose).
    """

    def __init__(
        self, directory: str | Path, destination: Destination, *, any_destination: bool = False
    ) -> None:
        self.directory = Path(directory)
        self._quarantine = Quarantine(self.directory / QUARANTINE)
        self.destination = destination
        self.any_destination = any_destination
        self._label = destination.as_json()

    def prepare(self) -> None:
        """Create the directory now, so a bad SPOOL_DIR fails at start rather than when needed."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise OSError(
                f"SPOOL_DIR={self.directory} is not a writable directory ({error.strerror})"
            ) from None

    def write(
        self, objects: Iterable[S3Object], *, reason: str, spooled_at: int | None = None
    ) -> Path | None:
        """Persist the objects durably; return the file written (None if there was nothing).

        `spooled_at` keeps the original time of objects written back after a failed replay,
        so the oldest object's age stays true.
        """
        batch = list(objects)
        lines = [encode_line(obj, self._label) for obj in batch]
        if not lines:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{spooled_at or time.time_ns()}-{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}"
        final = self.directory / name
        temporary = self.directory / f"{TEMPORARY}{name}"
        with open(temporary, "wb") as handle:
            handle.write(b"\n".join(lines) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        _fsync_directory(self.directory)
        payloads = sum(obj.payloads for obj in batch)
        log.warning(
            "spooled %d object(s) holding %d payload(s) to %s: %s",
            len(lines),
            payloads,
            final,
            reason,
            extra={
                "event": "spooled",
                "objects": len(lines),
                "payloads": payloads,
                "file": str(final),
                "reason": reason,
            },
        )
        return final

    def files(self) -> list[Path]:
        """The spool files waiting, oldest first; never a temporary or claimed file."""
        if not self.directory.is_dir():
            return []
        return sorted(
            path
            for path in self.directory.iterdir()
            if path.name.endswith(SUFFIX) and not path.name.startswith(".") and path.is_file()
        )

    def _held(self) -> list[Path]:
        """Files holding objects not yet in S3: waiting, and being replayed right now (a
        claim whose replayer died is counted too, until a replay takes it back)."""
        if not self.directory.is_dir():
            return []
        return self.files() + sorted(
            path for path in self.directory.iterdir() if CLAIM in path.name
        )

    def footprint(self, now: float | None = None) -> Footprint:
        files = self._held()
        total = 0
        for path in files:
            try:
                total += path.stat().st_size
            except OSError:  # replayed meanwhile
                continue
        oldest = min((spooled_at(path) for path in files), default=None)
        return Footprint(len(files), total, age(oldest, now))

    def census(self) -> Census:
        """Objects and payloads waiting for this destination (reads every file; unreadable
        lines are not counted), and how many objects wait for other destinations."""
        files = self._held()
        mine = []
        objects = payloads = size = 0
        elsewhere: dict[str, int] = {}
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as error:  # replayed meanwhile, or not a file at all
                if not isinstance(error, FileNotFoundError):
                    log.warning("spool: cannot read %s (%s); skipped", path.name, error)
                continue
            counted = False
            for line in data.splitlines():
                found = read_line(line) if line.strip() else None
                if found is None:
                    continue  # unreadable: a replay will quarantine it, not upload it
                obj, where = found
                if self._accepts(where):
                    objects, payloads, counted = objects + 1, payloads + obj.payloads, True
                else:
                    elsewhere[str(where)] = elsewhere.get(str(where), 0) + 1
            if counted:
                mine.append(path)
                size += len(data)
        oldest = min((spooled_at(path) for path in mine), default=None)
        return Census(len(mine), objects, payloads, size, age(oldest), elsewhere)

    def waiting(self) -> list[S3Object]:
        """Every readable object waiting, oldest file first (for tools and tests)."""
        found: list[S3Object] = []
        for path in self.files():
            try:
                found += read_file(path)[0]
            except OSError:  # replayed meanwhile
                continue
        return found

    def bound_elsewhere(self, path: Path) -> Destination | None:
        """The other destination this file's objects were written for, or None if they are
        for this one (the first readable line says: one write, one destination)."""
        try:
            with open(path, "rb") as handle:
                for line in handle:
                    try:
                        where = destination_of_line(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        continue
                    return None if self._accepts(where) else where
        except OSError:
            return None
        return None

    def claim(self, path: Path) -> Claimed | None:
        """Take this file for replay, or None if another replayer took it first.

        Locked before it is renamed, so a reclaim never finds a claimed file unlocked while
        its replayer lives."""
        lock = _locked(path)
        if lock is None:
            return None  # gone, or locked by another replayer
        claimed = path.with_name(f"{path.name}{CLAIM}{os.getpid()}")
        try:
            os.rename(path, claimed)
            objects, bad = read_file(claimed)
        except OSError:
            os.close(lock)
            return None
        if bad:
            self._quarantine.lines(path.name, bad)
        return Claimed(claimed, spooled_at(path), objects, len(bad), lock)

    def release(self, claimed: Claimed, remaining: list[S3Object]) -> None:
        """Done with a claimed file: write back what still failed, then remove it."""
        if remaining:
            self.write(remaining, reason="replay failed again", spooled_at=claimed.spooled_at)
        claimed.path.unlink()
        os.close(claimed.lock)
        _fsync_directory(self.directory)

    def reclaim_abandoned(self) -> int:
        """Files claimed by a replayer that died go back to the spool; writes torn by a writer
        that died go to quarantine. Returns how many files went back."""
        if not self.directory.is_dir():
            return 0
        returned = 0
        for path in self.directory.iterdir():
            name = path.name
            if CLAIM in name and name.split(CLAIM)[0].endswith(SUFFIX):
                lock = _locked(path)  # only a replayer that is gone leaves its claim unlocked
                if lock is not None:
                    try:
                        os.replace(path, path.with_name(name.split(CLAIM)[0]))
                        returned += 1
                    finally:
                        os.close(lock)
            elif name.startswith(TEMPORARY) and not _alive(writer_pid(name)):
                self._quarantine.file(path, "a spool write that never finished (torn)")
        return returned

    def _accepts(self, where: Destination) -> bool:
        return self.any_destination or where == self.destination


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _locked(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on `path`, or None if it is gone or
    someone else holds the lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
