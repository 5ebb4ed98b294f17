"""RATE_STORE: where tenant rate limits are counted for a whole fleet (a Redis URL).

Checked at start, so a typo stops the process with one line instead of every worker failing
open at its first request. The password may sit in the URL (as Heroku's REDIS_URL has it), so
nothing here ever echoes it: `redact` is what logs and `/healthz` show.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, urlsplit

SCHEMES = ("redis", "rediss")  # rediss: TLS
FORM = (
    "redis://[[user]:password@]host[:port][/db] (or rediss:// for TLS), with no timeout or "
    "retry options in the query (RATE_STORE_TIMEOUT_MS bounds every call)"
)
# redis-py lets a URL's query override the client's arguments: these would undo the bound on
# how long a decision may wait, so they are refused rather than obeyed.
OVERRIDES = {
    "socket_timeout",
    "socket_connect_timeout",
    "timeout",
    "retry_on_timeout",
    "retry_on_error",
    "health_check_interval",
}


def parse_rate_store(raw: str) -> str:
    """The URL as given, once it names a Redis host, a valid port and a numeric db; else
    ValueError (the caller words the one-line error without the value when it is secret)."""
    parts = urlsplit(raw)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        raise ValueError from None
    if parts.port == 0:
        raise ValueError
    db = parts.path.strip("/")
    if db and (not db.isdigit() or int(db) > 1_000_000):
        raise ValueError
    if parts.fragment or any(name.lower() in OVERRIDES for name, _ in parse_qsl(parts.query)):
        raise ValueError
    return raw


def redact(url: str) -> str:
    """The URL with any password replaced by ***: fit for a log line or a health report."""
    parts = urlsplit(url)
    query = "***" if "password" in parts.query.lower() else parts.query  # ?password=...
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return SplitResult(parts.scheme, netloc, parts.path, query, "").geturl()
