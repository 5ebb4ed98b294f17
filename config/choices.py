"""The values a setting may take where it names a choice, and the defaults behind them."""

from __future__ import annotations

SERVERS = ("granian", "waitress")
S3_CHECKS = ("strict", "warn", "off")  # a failed write probe at start: exit 1, log, or no probe
# Python threads per process that run requests under waitress (WEB_THREADS): it buffers whole
# requests first, so a few threads keep its cores busy. granian runs mailroom as an ASGI app
# on one event loop per worker: no request threads at all (a slow body holds a coroutine).
WAITRESS_THREADS = 8
ACK_MODES = ("queued", "stored")
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# RATE_STORE unreachable: "open" falls back to the per-box limit, "closed" refuses (429).
RATE_STORE_FAILURES = ("open", "closed")
BATCH_FORMATS = ("ndjson", "parquet")  # how a batch is encoded: NDJSON lines, or one Parquet table
# A PARTITION_BY value that cannot be a key segment: its "default" partition, or S3_ERROR_PREFIX.
PARTITION_INVALID = ("default", "error")
