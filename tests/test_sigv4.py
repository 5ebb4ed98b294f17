"""mailroom's SigV4 signer against botocore's, and the direct PUT against S3 wire servers.

moto's server does not check signatures, so the signature itself is checked against
botocore's signer for the same request and time.
"""

from __future__ import annotations

import datetime
import socket
import threading

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bench.s3sink import S3Sink
from store import S3Object, StoreError, open_s3
from store.sigv4 import SigV4
from tests.conftest import MOTO_CREDENTIALS

WHEN = datetime.datetime(2026, 11, 30, 12, 34, 56, tzinfo=datetime.UTC)


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("127.0.0.1:9000", "/bucket/payloads/v%3D1/dt%3D2026-11-30/a%20b~c.json"),
        ("bucket.s3.eu-west-1.amazonaws.com", "/payloads/x.ndjson.gz"),
    ],
)
def test_signature_matches_botocores(
    token: str | None, host: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"device":"sensor-0042","temp":21.5}\n'
    headers = {"Content-Type": "application/octet-stream", "x-amz-acl": "private"}
    ours = SigV4(
        "eu-west-1", lambda: ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token), now=lambda: WHEN
    ).headers("PUT", host, path, body, headers)

    request = AWSRequest(
        method="PUT",
        url=f"https://{host}{path}",
        data=body,
        headers={**headers, "X-Amz-Content-SHA256": ours["x-amz-content-sha256"]},
    )
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: WHEN.replace(tzinfo=None))
    signer = S3SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token), "s3", "eu-west-1"
    )
    signer.add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]
    if token:
        assert ours["x-amz-security-token"] == token


def test_the_direct_put_is_accepted_by_moto_and_stores_the_body(moto_endpoint, s3_bucket) -> None:
    client, bucket = s3_bucket
    store = open_s3(
        bucket=bucket,
        prefix="signed/",
        pool_size=2,
        endpoint_url=moto_endpoint,
        credentials=MOTO_CREDENTIALS,
        region="us-east-1",
    )
    objects = [S3Object(f"signed/v=1/{i} odd+key~.json", b'{"n":%d}' % i) for i in range(20)]
    threads = [threading.Thread(target=store.put, args=(obj,)) for obj in objects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for obj in objects:
        assert client.get_object(Bucket=bucket, Key=obj.key)["Body"].read() == obj.body


def test_a_connection_closed_by_the_server_is_reopened_once(sink: S3Sink) -> None:
    store = open_s3(
        bucket="sink",
        prefix="p/",
        pool_size=1,
        endpoint_url=sink.endpoint,
        credentials={"aws_access_key_id": "k", "aws_secret_access_key": "s"},
        region="us-east-1",
    )
    store.put(S3Object("p/1.json", b"{}"))
    sink.reset_faults()
    # The server drops every idle connection (as S3 does after a few seconds idle)...
    sink.close_idle_connections()
    store.put(S3Object("p/2.json", b"{}"))  # ...and the next put still goes through
    assert {"p/1.json", "p/2.json"} <= set(sink.objects)


def test_nothing_listening_is_a_retryable_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = open_s3(
        bucket="b",
        prefix="p/",
        pool_size=1,
        endpoint_url=f"http://127.0.0.1:{port}",
        credentials={"aws_access_key_id": "k", "aws_secret_access_key": "s"},
        region="us-east-1",
    )
    with pytest.raises(StoreError) as failed:
        store.put(S3Object("p/x.json", b"{}"))
    assert failed.value.retryable
