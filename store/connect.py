"""Connecting to a bucket: the one boto3 client a process shares, credentials checked at once,
and the direct PUT beside it (mailroom's SigV4 over http.client) unless S3_PUT=boto3."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.handlers import add_expect_header

from store.direct_put import DirectPut
from store.partitions import Partitioner
from store.s3 import CONNECT_TIMEOUT, READ_TIMEOUT, S3Store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any


def make_s3_client(
    *,
    pool_size: int,
    endpoint_url: str | None = None,
    credentials: dict[str, str] | None = None,
    region: str | None = None,
    session: boto3.session.Session | None = None,
) -> S3Client:
    """Build the one client the process shares (creating clients is not thread-safe; using them is).

    The pool is sized to the uploaders so connections are reused rather than churned.
    botocore's ``standard`` retry mode is kept for its error classification, but with a single
    attempt: the uploader retries itself (`actors.retry.Backoff`), starting at 50 ms rather than
    botocore's 1 s and bounded by a budget and the shutdown deadline. Two retry layers would
    multiply each other's waits while an uploader's whole mailbox stands still.
    """
    config = Config(
        max_pool_connections=max(pool_size, 1),
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    session = session or boto3.session.Session(region_name=region)
    client = session.client("s3", endpoint_url=endpoint_url, config=config, **(credentials or {}))
    # botocore sends `Expect: 100-continue` with every upload: a round trip more per put, for
    # bodies that are small anyway. `bench/put_cost.py` measures what dropping it saves.
    client.meta.events.unregister("before-call.s3", add_expect_header)
    return client


def open_s3(
    *,
    bucket: str,
    prefix: str,
    pool_size: int,
    endpoint_url: str | None = None,
    credentials: dict[str, str] | None = None,
    region: str | None = None,
    direct_put: bool = True,
    conditional_writes: bool = True,
    error_prefix: str = "errors/",
    state_prefix: str = "state/",
    partitioner: Partitioner | None = None,
    batch_format: str = "ndjson",
) -> S3Store:
    """The store for one bucket; fails at once, in one line, if there are no credentials."""
    session = boto3.session.Session(region_name=region)
    client = make_s3_client(
        pool_size=pool_size,
        endpoint_url=endpoint_url,
        credentials=credentials,
        session=session,
    )
    if credentials:
        found: Any = Credentials(
            credentials["aws_access_key_id"], credentials["aws_secret_access_key"]
        )
    else:
        found = session.get_credentials()
    if found is None:
        raise RuntimeError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or run where an instance role provides them"
        )
    putter = None
    if direct_put:
        putter = DirectPut(
            client,
            bucket,
            found,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
        )
    return S3Store(
        client,
        bucket,
        prefix,
        direct=putter,
        conditional_writes=conditional_writes,
        error_prefix=error_prefix,
        state_prefix=state_prefix,
        partitioner=partitioner,
        batch_format=batch_format,
    )
