"""Can this process write to its bucket? Asked at start, and again while the answer is no.

Wrong credentials or a missing bucket otherwise show only as payloads spooled one by one
while `/healthz` says "ok". At start a probe object is written (a write is what the service
needs, and a role allowed to write may not be allowed to list), overwritten each time.

It goes under the state prefix (`<S3_STATE_PREFIX>write-check`), never the data prefix: a
reader of `S3_PREFIX` must find payloads only. Writing there and deleting it afterwards was
the other way; it was not taken because the object would still be visible to a reader
listing the prefix meanwhile, a crash between the two would leave it for good, and the
service would need `s3:DeleteObject`, which it otherwise never does. The state prefix is
written anyway (idempotency markers), so the probe asks for no permission of its own; what
it cannot tell is a policy that allows the state prefix and not the data prefix: the first
upload shows that, and `/readyz` reports it.

`S3_CHECK=strict` refuses to start when it fails; `warn` (the default) starts, logs it, and
reports S3 unreachable in `/readyz` and `/healthz` until a probe or an upload works; `off`
skips it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from store import S3Store

log = logging.getLogger("mailroom")

RECHECK_SECONDS = 5.0


def probe(store: S3Store) -> str | None:
    """Write the probe object; None if it worked, else why not (one line)."""
    try:
        store.put(store.probe_object())
    except Exception as error:  # any failure to write is the answer
        return str(getattr(error, "cause", None) or error)
    return None


def check_at_start(store: S3Store, where: str, mode: str) -> str | None:
    """Probe once and log the result; raise RuntimeError in strict mode when it fails."""
    if mode == "off":
        return None
    failure = probe(store)
    if failure is None:
        log.info("S3 check: can write to %s", where, extra={"event": "s3_check", "ok": True})
        return None
    if mode == "strict":
        raise RuntimeError(f"S3 check failed: cannot write to {where} ({failure}); S3_CHECK=strict")
    log.error(
        "S3 check: cannot write to %s (%s); serving anyway (S3_CHECK=warn): what is accepted is "
        "spooled until S3 works, and /readyz answers 503 meanwhile",
        where,
        failure,
        extra={"event": "s3_check", "ok": False, "error": failure},
    )
    return failure


def watch(
    store: S3Store,
    failing: Callable[[], str | None],
    recovered: Callable[[], None],
    stop: threading.Event,
) -> threading.Thread:
    """While S3 counts as unreachable and nothing lands to say otherwise, probe every few
    seconds, so readiness comes back even when no traffic arrives to try S3."""

    def run() -> None:
        while not stop.wait(RECHECK_SECONDS):
            if failing() is not None and probe(store) is None:
                log.warning(
                    "S3 check: writing works again", extra={"event": "s3_check", "ok": True}
                )
                recovered()

    thread = threading.Thread(target=run, name="s3-check", daemon=True)
    thread.start()
    return thread
