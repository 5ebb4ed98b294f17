"""CPU and bytes per payload of a batch: gzip NDJSON against Parquet (BATCH_FORMAT), in process.

Encodes the same batches of realistic payloads (sensor readings: a device among a few
hundred, a float, a timestamp, a status, a nested location, a list of tags) the way an
uploader does for each format, through the store's own `batch_object`: JSON lines (which the
uploader makes in both formats, to count bytes against BATCH_MAX_BYTES) then the object.
Prints process CPU microseconds and object bytes per payload, the best of a few rounds.
`python -m bench.formats [--batches N] [--payloads-per-batch N]`.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from store.layout import Layout
from store.objects import S3Object

ROUNDS = 3


def payloads(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Readings as a fleet of sensors would send them (the same for every format)."""
    return [
        {
            "device": f"sensor-{rng.randrange(300):04d}",
            "temp": round(rng.uniform(-10, 40), 2),
            "humidity": rng.randrange(20, 95),
            "ts": 1_795_957_200 + n,
            "status": rng.choice(("ok", "ok", "ok", "degraded", "offline")),
            "loc": {"lat": round(rng.uniform(-60, 60), 5), "lon": round(rng.uniform(-180, 180), 5)},
            "tags": rng.sample(("indoor", "roof", "basement", "north", "south", "eu"), 2),
        }
        for n in range(count)
    ]


def encoder(layout: Layout, gzipped: bool) -> Callable[[str, list[Any]], S3Object]:
    def encode(batch_id: str, documents: list[Any]) -> S3Object:
        lines = layout.encode_all(documents)
        ids = [f"{batch_id}-{index}" for index in range(len(documents))]
        return layout.batch_object(
            lines,
            version="1",
            received_at=1_795_957_200.0,
            unique=batch_id,
            gzipped=gzipped,
            rows=lambda: (ids, documents),
        )

    return encode


def measure(
    encode: Callable[[str, list[Any]], S3Object], batches: list[list[Any]]
) -> tuple[float, float]:
    """(CPU us per payload, bytes per payload), the best CPU of ROUNDS rounds."""
    count = sum(map(len, batches))
    best = float("inf")
    size = 0
    for _ in range(ROUNDS):
        started = time.process_time()
        objects = [encode(f"b{n}", batch) for n, batch in enumerate(batches)]
        best = min(best, time.process_time() - started)
        size = sum(len(obj.body) for obj in objects)
    return best / count * 1e6, size / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--payloads-per-batch", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(18)
    batches = [payloads(args.payloads_per_batch, rng) for _ in range(args.batches)]
    rows = [
        ("NDJSON", encoder(Layout("p/"), gzipped=False)),
        ("gzip NDJSON (BATCH_GZIP)", encoder(Layout("p/"), gzipped=True)),
        ("Parquet, zstd (BATCH_FORMAT)", encoder(Layout("p/", batch_format="parquet"), False)),
    ]
    print(
        f"batch formats: {args.batches} batches of {args.payloads_per_batch} payloads "
        f"(best of {ROUNDS}; CPU of this process, encoding only)"
    )
    print(f"{'format':<30}{'CPU us/payload':>16}{'bytes/payload':>16}")
    for label, encode in rows:
        cpu, size = measure(encode, batches)
        print(f"{label:<30}{cpu:>16.2f}{size:>16.1f}")


if __name__ == "__main__":
    main()
