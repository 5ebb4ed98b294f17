"""The real service process under waitress, in front of moto's S3 server over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests

from tests.conftest import MOTO_CREDENTIALS
from tests.support import ROOT, ServiceProcess, free_port, wait_for

CLIENTS = 8
COLLECTIONS_PER_CLIENT = 20
PAYLOADS_PER_COLLECTION = 3


@pytest.fixture(params=["direct", "boto3"])
def service(moto_endpoint: str, s3_bucket, request) -> Iterator[ServiceProcess]:
    """The service, once with each S3_PUT path: the direct signed PUT and boto3's put_object."""
    _, bucket = s3_bucket
    process = ServiceProcess(
        {
            "S3_BUCKET": bucket,
            "S3_PREFIX": "incoming/",
            "AWS_ENDPOINT_URL_S3": moto_endpoint,
            "AWS_ACCESS_KEY_ID": MOTO_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": MOTO_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "MAX_WORKERS": "4",
            "S3_PUT": request.param,
        }
    ).start()
    yield process
    if process.proc and process.proc.poll() is None:
        process.stop()


def all_keys(client, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_every_payload_lands_exactly_once_with_its_body_and_headers(service, s3_bucket) -> None:
    client, bucket = s3_bucket
    sent: list[dict] = []

    def one_client(number: int) -> list[int]:
        statuses = []
        with requests.Session() as http:
            for n in range(COLLECTIONS_PER_CLIENT):
                data = [
                    {"client": number, "collection": n, "item": i, "text": "héllo ✓"}
                    for i in range(PAYLOADS_PER_COLLECTION)
                ]
                sent.extend(data)
                for _ in range(50):  # a 503 refused all of it: resend, as clients are told to
                    answer = http.post(
                        service.url + "/payloads",
                        json={"version": "2.1-beta+7", "token": "t", "data": data},
                        timeout=10,
                    )
                    if answer.status_code != 503:
                        break
                    time.sleep(0.2)
                statuses.append(answer.status_code)
                assert answer.json() == {"accepted": PAYLOADS_PER_COLLECTION}
        return statuses

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [s for batch in pool.map(one_client, range(CLIENTS)) for s in batch]
    assert statuses == [202] * CLIENTS * COLLECTIONS_PER_CLIENT
    expected = CLIENTS * COLLECTIONS_PER_CLIENT * PAYLOADS_PER_COLLECTION

    def payload_keys() -> list[str]:
        return [key for key in all_keys(client, bucket) if key.startswith("incoming/")]

    keys = wait_for(
        lambda: (found := payload_keys()) and len(found) >= expected and found,
        timeout=60,
        interval=0.5,
    )
    assert len(keys) == expected
    # The start check's probe object (S3_CHECK=warn by default) is there, once, and outside
    # the data prefix: a reader of incoming/ finds payloads only.
    assert [k for k in all_keys(client, bucket) if k not in keys] == ["state/write-check"]
    bodies = []
    for key in keys:
        assert key.startswith("incoming/dt=")
        assert "/version=2.1-beta_7/" in key
        obj = client.get_object(Bucket=bucket, Key=key)
        assert obj["ContentType"] == "application/octet-stream"
        bodies.append(orjson.loads(obj["Body"].read()))
    identity = lambda doc: (doc["client"], doc["collection"], doc["item"])  # noqa: E731
    assert sorted(map(identity, bodies)) == sorted(map(identity, sent))
    assert all(doc["text"] == "héllo ✓" for doc in bodies)

    grants = client.get_object_acl(Bucket=bucket, Key=keys[0])["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    assert grants[0]["Grantee"]["Type"] == "CanonicalUser"

    code, log = service.stop()
    assert code == 0, log
    assert "shut down cleanly" in log


def test_the_service_answers_bad_input_and_stays_up(service) -> None:
    answer = requests.post(
        service.url + "/payloads",
        data=b'{"version": "1", "token": "t", "data": [',
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()["field"] == "body"
    too_big = requests.post(
        service.url + "/payloads",
        data=b"x" * 2_000_000,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert too_big.status_code == 413
    ok = requests.post(
        service.url + "/payloads",
        json={"version": "1", "token": "t", "data": [{"still": "up"}]},
        timeout=5,
    )
    assert ok.status_code == 202


def test_with_no_s3_settings_it_serves_into_the_embedded_store() -> None:
    s3_port = str(free_port())
    env = {"EMBEDDED_S3_PORT": s3_port, "S3_BUCKET": "", "AWS_ENDPOINT_URL_S3": ""}
    process = ServiceProcess(env).start()
    try:
        answer = requests.post(
            process.url + "/payloads",
            json={"version": "0.1", "token": "t", "data": [{"hello": "world"}]},
            timeout=5,
        )
        assert answer.status_code == 202

        line = wait_for(lambda: listed(process, '{"hello":"world"}'), timeout=15, interval=0.5)
        assert "/version=0.1/" in line
    finally:
        code, log = process.stop()
    assert code == 0
    assert f"embedded S3 store at http://127.0.0.1:{s3_port}" in log
    # A first start prints nothing a newcomer would take for a misconfiguration: no warning
    # of granian's (threads, websockets) nor of mailroom's.
    assert "WARNING" not in log and "ERROR" not in log, log
    assert "websocket" not in log.lower() and "seems quite high" not in log, log


def test_list_shows_what_gzipped_batches_hold() -> None:
    s3_port = str(free_port())
    env = {
        "EMBEDDED_S3_PORT": s3_port,
        "S3_BUCKET": "",
        "AWS_ENDPOINT_URL_S3": "",
        "BATCH_MAX_PAYLOADS": "10",
        "BATCH_MAX_WAIT_MS": "50",
        "BATCH_GZIP": "true",
    }
    process = ServiceProcess(env).start()
    try:
        answer = requests.post(
            process.url + "/payloads",
            json={"version": "2", "token": "t", "data": [{"n": 1}, {"n": 2}]},
            timeout=5,
        )
        assert answer.status_code == 202

        shown = wait_for(lambda: listed(process, '{"n":2}'), timeout=15, interval=0.5)
        assert ".ndjson.gz\t" in shown and '{"n":1}\n{"n":2}' in shown
    finally:
        code, _ = process.stop()
    assert code == 0


def listed(process: ServiceProcess, expected: str) -> str:
    """What `mailroom list` prints for the service's store, once it shows `expected`."""
    result = subprocess.run(
        [sys.executable, "-m", "mailroom", "list"],
        cwd=ROOT,
        env={**process.env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout if expected in result.stdout else ""
