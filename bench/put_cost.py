"""CPU per S3 PutObject: boto3 as it comes vs. mailroom's tuned client, on this machine.

Starts the S3 sink in a child process (no latency, so the client's own CPU is what is timed),
then puts the same small payloads through each client from 1 and from 8 threads, and prints
the client process's CPU time per put. `python -m bench.put_cost [--puts N]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.handlers import add_expect_header

from store import S3Object, S3Store, make_s3_client, open_s3
from tests.support import free_port, wait_for

CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


def default_client(endpoint: str, threads: int):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **CREDENTIALS)


def checksums_when_required(endpoint: str, threads: int):  # type: ignore[no-untyped-def]
    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=config, **CREDENTIALS
    )


def no_expect_header(endpoint: str, threads: int):  # type: ignore[no-untyped-def]
    client = default_client(endpoint, threads)
    client.meta.events.unregister("before-call.s3", add_expect_header)
    return client


def tuned_client(endpoint: str, threads: int):  # type: ignore[no-untyped-def]
    return make_s3_client(
        pool_size=threads, endpoint_url=endpoint, credentials=CREDENTIALS, region="us-east-1"
    )


def direct_put(endpoint: str, threads: int) -> S3Store:
    return open_s3(
        bucket="bench",
        prefix="cost/",
        pool_size=threads,
        endpoint_url=endpoint,
        credentials=CREDENTIALS,
        region="us-east-1",
    )


VARIANTS = (
    ("boto3 defaults", default_client),
    ("checksums when_required", checksums_when_required),
    ("no Expect: 100-continue", no_expect_header),
    ("mailroom (make_s3_client)", tuned_client),
    ("mailroom S3_PUT=direct", direct_put),
)


def cpu_per_put(client, puts: int, threads: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Return (CPU microseconds per put, puts per second)."""
    store = client if isinstance(client, S3Store) else S3Store(client, "bench", "cost/")
    body = b'{"temperature": 21.5, "device": "sensor-0042", "ok": true}'
    for i in range(20):  # warm up: connections, botocore's lazy loading
        store.put(S3Object(f"cost/warm-{i}", body))
    cpu, wall = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: store.put(S3Object(f"cost/{i}", body)), range(puts)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / puts * 1e6, puts / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--puts", type=int, default=2000)
    args = parser.parse_args()
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "bench.s3sink", "--port", str(port), "--latency-ms", "0"],
        stdout=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import requests

        wait_for(lambda: _up(requests, endpoint), timeout=10)
        print(f"{'client':<28}{'threads':>8}{'CPU us/put':>12}{'puts/s':>10}")
        for threads in (1, 8):
            for name, factory in VARIANTS:
                micros, rate = cpu_per_put(factory(endpoint, threads), args.puts, threads)
                print(f"{name:<28}{threads:>8}{micros:>12.0f}{rate:>10.0f}", flush=True)
    finally:
        sink.terminate()
        sink.wait()


def _up(requests, endpoint: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        return requests.get(endpoint + "/_stats", timeout=1).ok
    except requests.ConnectionError:
        return False


if __name__ == "__main__":
    main()
