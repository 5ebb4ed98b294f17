"""Idempotency markers: when a collection sent with an Idempotency-Key was first accepted.

A payload's key carries the time its collection was accepted (its `dt=`/`hour=` partition),
so a resend would land under other keys. One small marker object per such collection, under
`S3_STATE_PREFIX` (never the data prefix), written with `If-None-Match: *`, holds the first
acceptance's time: the first writer, in any process on any host, wins; every later sender
reads it and builds the original keys, which the conditional data writes then find already
there (a repeat). A marker lives until an S3 lifecycle rule on
`{S3_STATE_PREFIX}idempotency/` expires it: that is the window within which a resend stores
nothing twice.
"""

from __future__ import annotations

import logging
import math

import orjson

from store.objects import S3Object

log = logging.getLogger(__name__)

MARKERS = "idempotency/"


def marker_key(state_prefix: str, marker: str) -> str:
    """The marker's key; `marker` is a hex digest made by the caller (safe as it is)."""
    return f"{state_prefix}{MARKERS}{marker}.json"


def marker_object(state_prefix: str, marker: str, received_at: float) -> S3Object:
    """The marker claiming `received_at` as the first acceptance (counts as no payload)."""
    body = orjson.dumps({"received_at": received_at})
    return S3Object(marker_key(state_prefix, marker), body, payloads=0)


def read_marker(key: str, body: bytes) -> float | None:
    """The first acceptance a marker holds; None (and a warning) if it holds nothing usable,
    so a damaged marker costs a duplicate rather than stalling every resend."""
    try:
        found = orjson.loads(body)["received_at"]
        if isinstance(found, int | float) and not isinstance(found, bool) and math.isfinite(found):
            return float(found)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    log.warning(
        "idempotency marker %s holds no usable time; the collection is stored as new",
        key,
        extra={"event": "marker_unreadable", "key": key},
    )
    return None
