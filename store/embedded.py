"""An S3-compatible store inside the process, for `make run` without an AWS account.

It is moto's server, spoken to over HTTP by the very same boto3 path as production. Its
objects live in memory and vanish when the process stops.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)

EMBEDDED_CREDENTIALS = {"aws_access_key_id": "embedded", "aws_secret_access_key": "embedded"}
EMBEDDED_BUCKET = "mailroom"
EMBEDDED_REGION = "us-east-1"


class EmbeddedS3:
    """Starts and stops moto's S3 server on a loopback port."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as error:
            raise RuntimeError(
                "S3_BUCKET is not set and the embedded store is not installed; "
                "set S3_BUCKET or `pip install -e .[embedded]`"
            ) from error
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._host = host
        self.port = port

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> EmbeddedS3:
        # moto's server thread would die silently on a busy port and start() would wait forever.
        with socket.socket() as probe:
            try:
                probe.bind((self._host, self.port))
            except OSError as error:
                raise RuntimeError(
                    f"EMBEDDED_S3_PORT={self.port} cannot be used ({error.strerror}); "
                    "choose another port or set S3_BUCKET"
                ) from None
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        return self

    def stop(self) -> None:
        self._server.stop()
