"""The access log's writer: lines formatted as the logging handler formats them (JSON or text),
buffered and written in a few large writes, as nginx's `access_log ... buffer= flush=` does,
instead of going through the logging machinery (a lock, a record, a handler) per request.

A request only appends its `AccessRecord` to a deque (thread-safe without a lock: waitress
answers in several threads). A flusher thread formats what waits and writes it every
FLUSH_SECONDS; should records pile up past MAX_WAITING (the output blocked), the request that
finds them writes them itself, so memory stays bounded and nothing is dropped. Each write
holds whole lines and at most PIPE_BUF bytes, so lines of several processes sharing one pipe
(the workers' stderr) never interleave mid-line. `close()` writes what is left. A line is at
most FLUSH_SECONDS late against the other log lines.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from web.access_log import AccessRecord, access_line, shown

LOGGER = "mailroom.access"
FLUSH_SECONDS = 0.5
MAX_WAITING = 20_000
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)


class AccessLogWriter:
    """An `AccessSink`: takes each answer's record; formats and writes them in batches."""

    def __init__(
        self,
        fmt: str = "json",
        write: Callable[[bytes], Any] | None = None,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._text = fmt == "text"
        self._write = write or _stderr
        self._max_waiting = max_waiting
        self._waiting: collections.deque[AccessRecord] = collections.deque()
        self._writing = threading.Lock()  # one flush at a time keeps the lines in order
        self._pid = os.getpid()
        self._second: tuple[int, str] = (-1, "")
        self._millis: tuple[int, str] = (-1, "")
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_every, args=(flush_seconds,), name="access-log", daemon=True
        )
        self._flusher.start()

    def __call__(self, record: AccessRecord) -> None:
        self._waiting.append(record)
        if len(self._waiting) > self._max_waiting or self._stop.is_set():
            self.flush()  # piled up (the output blocked), or after close: written at once

    def flush(self) -> None:
        """Format and write every record waiting now."""
        with self._writing:
            waiting = self._waiting
            lines = [self._format(waiting.popleft()) for _ in range(len(waiting))]
            for chunk in _chunks(lines):
                self._write(chunk)

    def close(self) -> None:
        """Stop the flusher and write what is left."""
        self._stop.set()
        self.flush()

    def _flush_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            with contextlib.suppress(OSError):  # a closed stderr: nothing to write to
                self.flush()

    def _format(self, record: AccessRecord) -> bytes:
        stamp = self._stamp(record.time)
        if self._text:
            message, fields = access_line(record)
            shown_fields = " ".join(
                f"{k}={v}" for k, v in fields.items() if k != "event" and v is not None
            )
            return f"{stamp} INFO {LOGGER}: {message} {shown_fields}\n".encode()
        # What the logging handler writes (python-json-logger: its fields, then ours), filled
        # into a template: the strings that come from the client are escaped; the rest
        # (numbers, the clock, ids and tenant names of a fixed alphabet) cannot need it.
        method, path, milliseconds = shown(record)
        method, path = _escaped(method), _escaped(path)
        extra = ""
        if record.payloads is not None:
            extra = f',"payloads":{record.payloads}'
            if record.tenant is not None:
                extra += f',"tenant":"{record.tenant}"'
        size = "null" if record.body_bytes is None else record.body_bytes
        return (
            f'{{"time":"{stamp}","level":"INFO","logger":"{LOGGER}","message":"{method} {path} '
            f'{record.status} in {milliseconds:.2f} ms","process":{self._pid},"event":"access",'
            f'"method":"{method}","path":"{path}","status":{record.status},"bytes":{size},'
            f'"duration_ms":{milliseconds!r},"request_id":"{record.request_id}"{extra}}}\n'
        ).encode()

    def _stamp(self, now: float) -> str:
        """The time as the logging formatter writes it, remade once a millisecond."""
        millis = int(now * 1000)
        if self._millis[0] != millis:
            self._millis = (millis, f"{self._clock(now)},{millis % 1000:03d}")
        return self._millis[1]

    def _clock(self, now: float) -> str:
        """The date and time to the second, as the logging formatter writes it."""
        second = int(now)
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
        return self._second[1]


def _escaped(text: str) -> str:
    """A string's JSON form without its quotes (the access log's strings are printable)."""
    if '"' in text or "\\" in text:
        return orjson.dumps(text).decode()[1:-1]
    return text


def _stderr(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(2, view) :]


def _chunks(lines: list[bytes]) -> list[bytes]:
    """Whole lines joined into writes of at most PIPE_BUF bytes (a longer line alone)."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        if current and size + len(line) > PIPE_BUF:
            chunks.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        chunks.append(b"".join(current))
    return chunks
