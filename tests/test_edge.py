"""The HTTP edge over a real socket, under each server: oversized bodies are refused before
they are sent, chunked bodies are cut off at MAX_BODY_BYTES, and errors are JSON with a
request id wherever the server lets the app answer (granian always; waitress answers some
itself, in text)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import orjson
import pytest

from tests.support import ServiceProcess, sink_env, wait_for

LIMIT = 65536


@pytest.fixture(params=["granian", "waitress"])
def service(sink, tmp_path, request) -> Iterator[ServiceProcess]:
    env = sink_env(sink, tmp_path / "spool", SERVER=request.param, MAX_BODY_BYTES=str(LIMIT))
    process = ServiceProcess(env).start()
    process.server = request.param  # type: ignore[attr-defined]
    yield process
    code, log = process.stop()
    assert code == 0, log


def exchange(port: int, *parts: bytes, wait: float = 3.0) -> tuple[float, bytes]:
    """Send the parts, then read until the server closes or `wait` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        started = time.monotonic()
        for part in parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        received = b""
        first = None
        while time.monotonic() - started < wait:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            first = first or time.monotonic() - started
            received += chunk
            if b"\r\n\r\n" in received and _complete(received):
                break
        return (first if first is not None else wait), received


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def headers(response: bytes) -> dict[str, str]:
    head = response.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}


def test_an_oversized_content_length_is_refused_at_once_and_never_continued(service) -> None:
    took, response = exchange(
        service.port,
        b"POST /payloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200000000\r\nExpect: 100-continue\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert took < 1.0
    assert b"100 Continue" not in response
    if service.server == "granian":  # the app answered: JSON, with a request id
        assert orjson.loads(response.partition(b"\r\n\r\n")[2])["error"] == "body_too_large"
        assert headers(response)["x-request-id"]


def test_a_chunked_body_is_cut_off_at_max_body_bytes(service) -> None:
    chunk = b"x" * 16384
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    _took, response = exchange(
        service.port,
        b"POST /payloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        *([framed] * (LIMIT // len(chunk) + 2)),
        b"0\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    if service.server == "granian":
        assert orjson.loads(response.partition(b"\r\n\r\n")[2])["error"] == "body_too_large"


def test_errors_the_app_answers_are_json_with_a_request_id(service) -> None:
    body = b'{"version":"1","token":"t","data":[{"n":18446744073709551616}]}'
    _, response = exchange(
        service.port,
        b"POST /payloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nX-Request-ID: edge-1\r\n\r\n%s" % (len(body), body),
    )
    assert response.startswith(b"HTTP/1.1 400"), response[:200]
    assert headers(response)["x-request-id"] == "edge-1"
    error = orjson.loads(response.partition(b"\r\n\r\n")[2])
    assert (error["error"], error["field"]) == ("invalid_collection", "body")


def test_a_chunked_body_within_the_limit_is_accepted(service) -> None:
    body = b'{"version":"1","token":"t","data":[{"n":1},{"n":2}]}'
    half = len(body) // 2
    _, response = exchange(
        service.port,
        b"POST /payloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"%x\r\n%s\r\n" % (half, body[:half]),
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - half, body[half:]),
    )
    assert response.startswith(b"HTTP/1.1 202"), response[:300]
    assert orjson.loads(response.partition(b"\r\n\r\n")[2]) == {"accepted": 2}


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_refused_unread_when_full_and_the_connection_stays_usable(sink, tmp_path, server) -> None:
    """Full mailboxes: 503 before the body is read, and the kept-alive connection goes on."""
    import http.client

    sink.hang_for(30)  # the one uploader is stuck in its first PUT
    env = sink_env(sink, tmp_path / "spool", SERVER=server, MAX_WORKERS="1", MAX_QUEUE="2")
    service = ServiceProcess(env).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
        statuses = []
        sockets = set()
        for n in range(5):
            body = orjson.dumps({"version": "1", "token": "t", "data": [{"n": n}, {"m": n}]})
            connection.request(
                "POST", "/payloads", body=body, headers={"Content-Type": "application/json"}
            )
            answer = connection.getresponse()
            payload = orjson.loads(answer.read())
            statuses.append(answer.status)
            sockets.add(id(connection.sock))
            if answer.status == 503:
                assert "all uploader mailboxes are full" in payload["message"]
                assert answer.getheader("Connection", "").lower() != "close"
            time.sleep(0.3 if n < 2 else 0)  # the first collection is taken into hand
        assert statuses == [202, 202, 503, 503, 503]
        assert len(sockets) == 1  # one connection throughout: the unread bodies were skipped
        connection.close()
    finally:
        sink.reset_faults()
        code, log = service.stop()
    assert code == 0, log


@pytest.mark.parametrize("server", ["granian", "waitress"])
def test_a_bad_bearer_token_and_a_gzip_ndjson_body_over_a_real_socket(sink, tmp_path, server):
    """Through the real server: a wrong bearer token is answered 401 with the body never sent
    (granian calls the app at the headers; waitress buffers the body first, so there the
    client must send it), and a gzipped NDJSON body lands payload by payload."""
    import gzip

    env = sink_env(sink, tmp_path / "spool", SERVER=server, INGEST_TOKENS="acme:k1")
    service = ServiceProcess(env).start()
    try:
        head = (
            b"POST /payloads?version=1 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-ndjson\r\nAuthorization: Bearer wrong\r\n"
            b"Content-Length: 60000\r\n\r\n"
        )
        parts = (head,) if server == "granian" else (head, b"x" * 60000)
        _, response = exchange(service.port, *parts)
        assert response.startswith(b"HTTP/1.1 401"), response[:200]
        assert orjson.loads(response.partition(b"\r\n\r\n")[2])["error"] == "unauthorized"

        body = gzip.compress(b'{"n":1}\n{"n":2}\n{"n":3}\n')
        _, response = exchange(
            service.port,
            b"POST /payloads?version=1 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\n"
            b"Authorization: Bearer k1\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n",
            body,
        )
        assert response.startswith(b"HTTP/1.1 202"), response[:200]
        wait_for(lambda: sink.payload_count() == 3, timeout=10)
    finally:
        code, log = service.stop()
    assert code == 0, log
    stored = sorted(orjson.loads(obj.body)["n"] for obj in sink.objects.values())
    assert stored == [1, 2, 3]
    assert all(key.startswith("payloads/tenant=acme/") for key in sink.objects)


def test_http_1_0_clients_are_served(service, sink) -> None:
    """nginx speaks HTTP/1.0 to its upstreams by default (granian named it "1", which Falcon
    refused with a 500 to every request)."""
    _, live = exchange(service.port, b"GET /livez HTTP/1.0\r\nHost: x\r\n\r\n")
    assert live.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), live[:200]
    body = b'{"version":"1","token":"t","data":[{"n":1}]}'
    _, posted = exchange(
        service.port,
        b"POST /payloads HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert posted.startswith((b"HTTP/1.0 202", b"HTTP/1.1 202")), posted[:200]
    wait_for(lambda: sink.payload_count() == 1, timeout=10)


@pytest.mark.parametrize("server", ["granian"])
def test_only_http_1_is_spoken_and_a_silent_connection_is_closed(sink, tmp_path, server) -> None:
    """No cleartext HTTP/2 (where a stream its client reset after the body passed for a whole
    body), and a connection that never sends a byte is closed after HEADER_TIMEOUT like one
    that trickles its headers (under HTTP/2 negotiation it was kept for ever)."""
    env = sink_env(sink, tmp_path / "spool", SERVER=server, HEADER_TIMEOUT="1")
    service = ServiceProcess(env).start()
    try:
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
        _, answer = exchange(service.port, preface, wait=3)
        assert not answer.startswith(bytes.fromhex("000000")), answer[:50]  # no SETTINGS frame
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as silent:
            started = time.monotonic()
            assert silent.recv(1) == b""  # closed by the server, nothing sent either way
            assert time.monotonic() - started < 1 + 3
    finally:
        code, log = service.stop()
    assert code == 0, log
