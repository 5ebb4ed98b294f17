"""TENANT_RATE's answer: 429 says "you, slow down", with the seconds until the tenant's bucket
holds enough (the limit itself is the `rates` package's); 503 stays "the service is full"."""

from __future__ import annotations

import math


def retry_after(seconds: float) -> str:
    """Whole seconds for a Retry-After header, at least 1."""
    return str(max(1, math.ceil(seconds)))
