"""BODY_MEMORY_BYTES: how much request body one ASGI worker holds at once.

A body is read whole before it is parsed, and granian calls the app as soon as the headers
are in: without a bound, 2,400 clients each sending most of a 1 MiB body took a worker to
1.5 GB. A request reserves its Content-Length (MAX_BODY_BYTES for a chunked body) before
its body is read and gives it back when it is answered; what does not fit is refused at
once with 503, its body unread (waitress needs none of this: it spools bodies over 64 KiB
to disk before the app runs).
"""

from __future__ import annotations


class BodyMemory:
    """Bytes of bodies being read or parsed now, against a limit. Used from the event loop's
    thread only, so plain counting is enough."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def reserve(self, size: int) -> bool:
        """Hold `size` bytes if they fit (one body alone always does)."""
        if self.held and self.held + size > self.limit:
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        self.held -= size
