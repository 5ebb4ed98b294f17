"""A small, fast S3-compatible sink on loopback: enough of S3 for PutObject, and faults on demand.

moto's server answers ~120 PUT/s, far too slow to measure mailroom; this one answers thousands,
after a configurable latency (real S3 takes tens of milliseconds), and counts the payloads it
got (one per object, or one per line of a newline-delimited batch, gzipped or not). It can also
misbehave: answer a share of PUTs with 503 SlowDown, or with a 500 whose XML body is not even
UTF-8; hold PUTs unanswered for a while (a hung S3); or be down (refuse connections) a while.
Objects are kept in memory so tests can check every one, exactly once, and read back with
GetObject (as mailroom reads its idempotency markers).

Run alone: `python -m bench.s3sink --port 9100 --latency-ms 30`; `GET /_stats` returns counts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import orjson

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
NO_SUCH_KEY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>"
)
PRECONDITION = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code>'
    b"<Message>At least one of the pre-conditions you specified did not hold</Message></Error>"
)
BAD_DIGEST = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadDigest</Code>'
    b"<Message>The Content-MD5 you specified did not match what we received.</Message></Error>"
)
GARBAGE = (  # a 500 whose body no UTF-8 decoder (nor XML parser) accepts
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>Internal\xffError</Code>'
    b"<Message>We encountered an internal error.\xfe\xff</Message></Error>"
)


NOT_PAYLOADS = ("state/",)  # key prefixes whose objects are counted as no payload


@dataclass
class StoredObject:
    body: bytes
    headers: dict[str, str]


@dataclass
class SinkStats:
    puts: int = 0
    payloads: int = 0
    failed_puts: int = 0
    overwrites: int = 0
    gets: int = 0
    precondition_failed: int = 0  # If-None-Match: * on a key already stored (412)
    lies: int = 0  # PUTs answered 200 without storing (the lie fault)
    held: int = 0  # PUTs held unanswered by the hang fault (counted as they start waiting)
    first_put: float | None = None
    last_put: float | None = None


@dataclass
class Faults:
    """What the sink should get wrong: shares of PUTs refused or answered with garbage, PUTs held
    unanswered until a time, or everything down until a time."""

    fail_rate: float = 0.0
    garbage_rate: float = 0.0
    lie_rate: float = 0.0  # answer 200, without an ETag, and store nothing
    hang_until: float = 0.0
    down_until: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))


def decode_aws_chunked(body: bytes) -> bytes:
    """botocore's streaming upload format: hex size, CRLF, data, CRLF ... 0, trailers."""
    out = bytearray()
    pos = 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def count_payloads(body: bytes, headers: dict[str, str]) -> int:
    """One payload per object, one per line when the object is a batch, one per row when it
    is a Parquet table."""
    if body[:4] == b"PAR1":
        import io

        import pyarrow.parquet as pq  # only where Parquet is written, so installed

        return pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    if b"\n" in body.rstrip(b"\n"):
        return sum(1 for line in body.splitlines() if line.strip())
    return 1


class S3Sink:
    """The sink's state and protocol; `serve_in_thread` runs it beside a test or a benchmark."""

    def __init__(self, latency_ms: float = 30.0, keep_bodies: bool = True) -> None:
        self.latency = latency_ms / 1000.0
        self.keep_bodies = keep_bodies
        self.objects: dict[str, StoredObject] = {}
        self.stats = SinkStats()
        self.faults = Faults()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()  # _store_if_absent holds it around _store
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def payload_count(self) -> int:
        with self._lock:
            return self.stats.payloads

    def fail_share(self, rate: float) -> None:
        self.faults.fail_rate = rate

    def garbage_errors(self, rate: float) -> None:
        """Answer that share of PUTs `500 Internal Server Error` with a body that is not UTF-8."""
        self.faults.garbage_rate = rate

    def lie(self, rate: float) -> None:
        """Answer that share of PUTs 200 with no ETag and store nothing (a broken proxy)."""
        self.faults.lie_rate = rate

    def hang_for(self, seconds: float) -> None:
        """Read PUTs but answer none until `seconds` from now (a hung S3), then answer them."""
        self.faults.hang_until = time.monotonic() + seconds

    def go_down_for(self, seconds: float) -> None:
        """Refuse every connection for `seconds` (as an outage would), then come back."""
        self.faults.down_until = time.monotonic() + seconds

    def reset_faults(self) -> None:
        """Behave again: no shares failed, nothing held (held PUTs are answered), not down."""
        self.faults = Faults()

    # -- serving ------------------------------------------------------------------------

    def serve_in_thread(self, port: int = 0) -> S3Sink:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._client, "127.0.0.1", port, backlog=1024)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="s3sink", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then end the loop and its thread."""
        if self._loop is None or self._server is None:
            return
        server = self._server

        async def shut_down() -> None:
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut_down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop.close()

    def close_idle_connections(self) -> None:
        """Close every client connection, as S3 closes idle kept-alive ones."""

        async def close_all() -> None:
            for writer in list(self._writers):
                writer.close()

        assert self._loop is not None, "serve_in_thread() first"
        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if time.monotonic() < self.faults.down_until:
                    return  # an outage: the request is dropped unanswered
                method, target, headers = _parse_head(head)
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                status, extra, payload = await self._handle(method, target, headers, body)
                writer.write(_response(status, extra, payload))
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[str, dict[str, str], bytes]:
        path = unquote(urlsplit(target).path)
        if method == "GET" and path == "/_stats":
            with self._lock:
                stats = dict(vars(self.stats))
            return "200 OK", {"Content-Type": "application/json"}, orjson.dumps(stats)
        if method == "GET" and path.count("/") >= 2:
            if self.latency:
                await asyncio.sleep(self.latency)
            with self._lock:
                found = self.objects.get(path.split("/", 2)[2])
                self.stats.gets += 1
            if found is None:
                return "404 Not Found", {"Content-Type": "application/xml"}, NO_SUCH_KEY
            return "200 OK", {"ETag": f'"{hashlib.md5(found.body).hexdigest()}"'}, found.body
        if method == "PUT" and path.count("/") >= 2:
            if time.monotonic() < self.faults.hang_until:
                with self._lock:
                    self.stats.held += 1
            while time.monotonic() < self.faults.hang_until:  # re-read: it may move or be reset
                await asyncio.sleep(min(self.faults.hang_until - time.monotonic(), 0.05))
            if self.latency:
                await asyncio.sleep(self.latency)
            faults = self.faults
            if faults.fail_rate and faults.rng.random() < faults.fail_rate:
                with self._lock:
                    self.stats.failed_puts += 1
                return "503 Slow Down", {"Content-Type": "application/xml"}, SLOWDOWN
            if faults.garbage_rate and faults.rng.random() < faults.garbage_rate:
                with self._lock:
                    self.stats.failed_puts += 1
                return "500 Internal Server Error", {"Content-Type": "application/xml"}, GARBAGE
            if faults.lie_rate and faults.rng.random() < faults.lie_rate:
                with self._lock:
                    self.stats.lies += 1
                return "200 OK", {}, b""
            if "aws-chunked" in headers.get("content-encoding", "") or headers.get(
                "x-amz-content-sha256", ""
            ).startswith("STREAMING"):
                body = decode_aws_chunked(body)
            digest = hashlib.md5(body, usedforsecurity=False)
            sent = headers.get("content-md5")
            if sent is not None and sent != base64.b64encode(digest.digest()).decode():
                return "400 Bad Request", {"Content-Type": "application/xml"}, BAD_DIGEST
            if headers.get("if-none-match") != "*":
                self._store(path, body, headers)
            elif not self._store_if_absent(path, body, headers):
                return "412 Precondition Failed", {"Content-Type": "application/xml"}, PRECONDITION
            return "200 OK", {"ETag": f'"{digest.hexdigest()}"'}, b""
        if method in ("PUT", "HEAD") and path.count("/") == 1:
            return "200 OK", {}, b""  # bucket create / head: accepted
        return "404 Not Found", {"Content-Type": "application/xml"}, b"<Error/>"

    def _store_if_absent(self, path: str, body: bytes, headers: dict[str, str]) -> bool:
        """S3's `If-None-Match: *`: store only if the key is new; False (412) otherwise."""
        with self._lock:
            if path.split("/", 2)[2] in self.objects:
                self.stats.precondition_failed += 1
                return False
            self._store(path, body, headers)
        return True

    def _store(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        key = path.split("/", 2)[2]
        kept = {
            name: value
            for name, value in headers.items()
            if name in ("content-type", "x-amz-acl", "content-encoding")
        }
        # mailroom's own objects (under S3_STATE_PREFIX's default) hold no payload
        payloads = 0 if key.startswith(NOT_PAYLOADS) else count_payloads(body, headers)
        now = time.monotonic()
        with self._lock:
            if key in self.objects:
                self.stats.overwrites += 1
            else:
                self.stats.payloads += payloads
            keep = self.keep_bodies or key.startswith(NOT_PAYLOADS)  # markers are read back
            self.objects[key] = StoredObject(body if keep else b"", kept)
            self.stats.puts += 1
            self.stats.first_put = self.stats.first_put or now
            self.stats.last_put = now


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _response(status: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Server: s3sink"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    args = parser.parse_args()
    sink = S3Sink(args.latency_ms, keep_bodies=False).serve_in_thread(args.port)
    print(f"s3sink listening on {sink.endpoint}, {args.latency_ms} ms per PUT", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sink.stop()


if __name__ == "__main__":
    main()
