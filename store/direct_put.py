"""PutObject on the hot path: a SigV4-signed PUT over a kept-alive connection per thread.

boto3's `put_object` spends ~1.1 ms of CPU per call on this machine (validation,
serialisation, ~100 event hooks, response parsing); botocore's signer and urllib3 session
alone still take ~0.46 ms. This signs with `store/sigv4.py` (~12 us) and sends with
`http.client` over one persistent connection per uploader thread (~0.11 ms), taking the
object URL from botocore's own endpoint resolution (one presigned URL at start), so
virtual-host or path style, regions and custom endpoints are what the client would use.
Proxies (`HTTPS_PROXY`) are not supported here: use `S3_PUT=boto3` behind one.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import socket
import ssl
import threading
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.httpsession import get_cert_path

from store.sigv4 import SigV4

PROBE_KEY = "mailroom-probe-key"
_ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")
# A kept-alive connection the server closed meanwhile fails like this before any answer;
# a PUT of the same key and body is idempotent, so it is sent once more on a fresh one.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class PutRejected(Exception):
    """S3 answered with an error status; carries its code and HTTP status."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(f"S3 answered {code} (HTTP {status})")
        self.code = code
        self.status = status


class PutFailed(Exception):
    """No answer from S3: connection refused, reset or timed out. Always worth retrying."""


class DirectPut:
    """Signs and sends PUT requests for one bucket; safe from any number of threads."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        credentials: Any,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        probe = client.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": PROBE_KEY}, ExpiresIn=60
        )
        base = urlsplit(probe.split(PROBE_KEY, 1)[0])
        self._https = base.scheme == "https"
        self._host = base.netloc
        self._path = base.path  # "/bucket/" (path style) or "/" (virtual host)
        self._signer = SigV4(client.meta.region_name or "us-east-1", _reader(credentials))
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._tls = ssl.create_default_context(cafile=get_cert_path(True)) if self._https else None
        self._local = threading.local()

    def url_for(self, key: str) -> str:
        return f"{'https' if self._https else 'http'}://{self._host}{self._path_for(key)}"

    def put(self, key: str, body: bytes, headers: dict[str, str], *, if_absent: bool) -> bool:
        """One signed PUT: True if it stored the object, False if `if_absent` and an object
        was already there (412). Raises PutRejected on an error answer, PutFailed without a
        usable one.

        `Content-MD5` makes S3 check the body it received; a 200 without an ETag is not S3
        having stored it (a proxy or a stand-in answering for it) and counts as a failure.
        """
        path = self._path_for(key)
        extra = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
        if if_absent:
            extra["If-None-Match"] = "*"
        signed = self._signer.headers("PUT", self._host, path, body, {**headers, **extra})
        signed["content-length"] = str(len(body))
        status, content, etag = self._send(path, body, signed)
        if status == 200:
            if not etag:
                raise PutFailed(f"{self._host} answered 200 without an ETag: not stored")
            return True
        if status == 412 and if_absent:
            return False  # the same key, already stored: a retry or replay of what landed
        found = _ERROR_CODE.search(content)
        code = found.group(1).decode("utf-8", "replace") if found else str(status)
        raise PutRejected(code, status)

    def _send(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        reused = getattr(self._local, "connection", None)
        try:
            return self._exchange(reused or self._connect(), path, body, headers)
        except _STALE as error:
            self._close()
            if reused is None:
                raise PutFailed(f"connection to {self._host} lost: {error!r}") from None
        except (OSError, http.client.HTTPException) as error:
            self._close()
            raise PutFailed(f"{self._host}: {error!r}") from None
        try:  # the reused connection had gone stale: once more on a fresh one
            return self._exchange(self._connect(), path, body, headers)
        except (OSError, http.client.HTTPException) as error:
            self._close()
            raise PutFailed(f"{self._host}: {error!r}") from None

    def _exchange(
        self, connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict
    ) -> tuple[int, bytes, str]:
        connection.request("PUT", path, body=body, headers=headers)
        response = connection.getresponse()
        content = response.read()  # all of it, so the connection can carry the next request
        if response.will_close:
            self._close()
        return response.status, content, response.getheader("ETag", "")

    def _connect(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        if self._tls is not None:
            connection = http.client.HTTPSConnection(
                self._host, timeout=self._connect_timeout, context=self._tls
            )
        else:
            connection = http.client.HTTPConnection(self._host, timeout=self._connect_timeout)
        connection.connect()
        assert connection.sock is not None
        # Headers and body go in separate sends: without TCP_NODELAY, Nagle and delayed ACKs
        # would add ~40 ms to every put.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sock.settimeout(self._read_timeout)
        self._local.connection = connection
        return connection

    def _close(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def _path_for(self, key: str) -> str:
        return self._path + quote(key, safe="/~")


def _reader(credentials: Any) -> Any:
    """(access key, secret key, token) from botocore credentials, refreshed as they expire."""

    def read() -> tuple[str, str, str | None]:
        frozen = credentials.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token

    return read


__all__ = ["DirectPut", "PutFailed", "PutRejected"]
