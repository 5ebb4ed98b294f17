"""The dead-letter spool: objects that could not be uploaded, kept on local disk until replayed.

Each write is one file of JSON lines (one object per line), written to a temporary name,
fsynced, renamed into place and the directory fsynced: after `write` returns, the objects
survive a crash or a power cut. Replay claims a file by renaming it, so two processes sharing
the directory never replay the same file at once, and removes it only once every object in it
has landed; what still fails is written back as a new spool file.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from store.objects import S3Object

log = logging.getLogger(__name__)

SUFFIX = ".spool"
CLAIM = ".replaying-"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    landed: int
    failed: int
    files: int


class DeadLetterSpool:
    """Durable, append-only storage of S3 objects on local disk."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

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

    def write(self, objects: Iterable[S3Object], *, reason: str) -> Path | None:
        """Persist the objects durably; return the file written (None if there was nothing)."""
        batch = list(objects)
        lines = [_encode(obj) for obj in batch]
        if not lines:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{os.getpid()}-{os.urandom(4).hex()}{SUFFIX}"
        final = self.directory / name
        temporary = self.directory / f".tmp-{name}"
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
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    def footprint(self) -> tuple[int, int]:
        """Files and bytes waiting in the spool, from the directory alone (cheap)."""
        files = self.files()
        total = 0
        for path in files:
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # replayed meanwhile
                continue
        return len(files), total

    def size(self) -> tuple[int, int]:
        """Objects and payloads waiting in the spool (read from disk)."""
        objects = payloads = 0
        for path in self.files():
            for obj in _read(path):
                objects += 1
                payloads += obj.payloads
        return objects, payloads

    def replay(self, put: Callable[[S3Object], None]) -> ReplayResult:
        """Upload every spooled object with `put`; keep only what raised."""
        self._reclaim_abandoned()
        landed = failed = files = 0
        for path in self.files():
            claimed = path.with_name(f"{path.name}{CLAIM}{os.getpid()}")
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # another process claimed it first
            files += 1
            remaining: list[S3Object] = []
            for obj in _read(claimed):
                try:
                    put(obj)
                    landed += obj.payloads
                except Exception as error:  # whatever the cause, it is kept for the next replay
                    log.warning("replay of %s failed: %s", obj.key, error)
                    remaining.append(obj)
                    failed += obj.payloads
            if remaining:
                self.write(remaining, reason="replay failed again")
            claimed.unlink()
            _fsync_directory(self.directory)
        return ReplayResult(landed, failed, files)

    def _reclaim_abandoned(self) -> None:
        """Return files claimed by a replayer that died to the spool."""
        if not self.directory.is_dir():
            return
        for path in self.directory.glob(f"*{SUFFIX}{CLAIM}*"):
            pid = int(path.name.rsplit("-", 1)[1])
            if pid != os.getpid() and not _alive(pid):
                os.replace(path, path.with_name(path.name.split(CLAIM)[0]))


def _encode(obj: S3Object) -> bytes:
    return orjson.dumps(
        {
            "key": obj.key,
            "body": base64.b64encode(obj.body).decode(),
            "payloads": obj.payloads,
        }
    )


def _read(path: Path) -> list[S3Object]:
    objects = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            raw = orjson.loads(line)
            objects.append(S3Object(raw["key"], base64.b64decode(raw["body"]), raw["payloads"]))
    return objects


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
