"""Which limiter a process uses, from the settings: the two calls the server wiring makes.

The main process calls `prepare_box` before it starts any worker and puts the handle's `env`
into theirs; each serving process calls `limiter_for` once. TENANT_RATE=0 gives `NoLimit`
(nothing shared, no Redis); a prepared box gives its shared buckets, otherwise the process
keeps its own; RATE_STORE puts Redis in front of that, which then serves as the fallback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from config import Settings
from config.rate_store import redact
from rates.box import BoxFile, BoxFileError, BoxRates, make_box_file
from rates.failover import Failover, StoreObserver, describe
from rates.fleet import STORE_ERRORS, FleetRates
from rates.limiter import Limiter, NoLimit
from rates.local import LocalRates
from rates.redis_store import RedisBuckets, connect

log = logging.getLogger("mailroom.rates")


def prepare_box(settings: Settings, directory: str | None = None) -> BoxFile:
    """Main process, before any worker starts: the file its workers share their buckets in.
    Put `handle.env` into the workers' environment; call `handle.cleanup()` once they have
    all exited. Nothing is created when TENANT_RATE is 0."""
    return make_box_file(settings.tenants, settings.tenant_rate, directory)


def limiter_for(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    *,
    observer: StoreObserver | None = None,
) -> Limiter:
    """In each serving process, once: the limiter TENANT_RATE and RATE_STORE ask for."""
    if settings.tenant_rate <= 0:
        return NoLimit()
    local = box_or_process(settings, os.environ if environ is None else environ)
    if not settings.rate_store:
        return local
    timeout = settings.rate_store_timeout_ms / 1000
    buckets = RedisBuckets(
        connect(settings.rate_store, timeout), settings.tenant_rate, settings.burst
    )
    failover = Failover(redact(settings.rate_store), settings.rate_store_failure, observer=observer)
    return FleetRates(buckets, local, failover, timeout=timeout)


def box_or_process(settings: Settings, environ: Mapping[str, str]) -> Limiter:
    """The box's shared buckets when the main process prepared them, else this process's."""
    rate, burst = settings.tenant_rate, settings.burst
    try:
        box = BoxRates.attach(environ, rate, burst)
    except BoxFileError as error:  # the limit still holds, per process: say so once
        log.error("%s; tenant limits hold per process instead", error)
        box = None
    return box if box is not None else LocalRates(rate, burst)


def check_rate_store(settings: Settings) -> str | None:
    """For the main process's start-up line: None when RATE_STORE answers (or is unset),
    else one line saying why not. Serving goes on either way (RATE_STORE_FAILURE decides)."""
    if not settings.rate_store or settings.tenant_rate <= 0:
        return None
    client = connect(settings.rate_store, settings.rate_store_timeout_ms / 1000)
    try:
        client.ping()
    except STORE_ERRORS as error:
        return f"rate store {redact(settings.rate_store)} does not answer: {describe(error)}"
    finally:
        client.close()
    return None
