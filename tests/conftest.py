from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pykka
import pytest
from moto.server import ThreadedMotoServer

from bench.s3sink import S3Sink
from tests.support import free_port

MOTO_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server over real HTTP on loopback, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> tuple[object, str]:
    """A fresh, empty bucket on the moto server, and a boto3 client to read it back."""
    client = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1", **MOTO_CREDENTIALS
    )
    name = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return client, name


@pytest.fixture(autouse=True)
def _stop_all_actors() -> Iterator[None]:
    """Like pykka's own tests: whatever a test started is stopped afterwards."""
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=10)


@pytest.fixture
def sink() -> Iterator[S3Sink]:
    """The fast S3 stand-in on loopback (2 ms per PUT); tests change its latency and faults."""
    server = S3Sink(latency_ms=2).serve_in_thread()
    yield server
    server.stop()


@pytest.fixture(params=["wsgi", "asgi"])
def make_app(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """The app factory for waitress (WSGI) and for granian (ASGI): a contract test taking this
    runs against both, since both are built from the same checks and admission path."""
    from web import create_app, create_asgi_app

    return create_app if request.param == "wsgi" else create_asgi_app
