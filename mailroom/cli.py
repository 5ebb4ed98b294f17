"""The `mailroom` command: serve, or look at what landed and what waits in the spool.

Exit codes: 0 done; 1 failed while running (payloads could not be stored nor spooled, the
supervision tree gave up, a replay left objects failing, the store could not be read);
2 cannot start (a setting is invalid, or what it names is missing: credentials, SPOOL_DIR,
PORT, a bucket that S3_CHECK=strict could not write to).
"""

from __future__ import annotations

import argparse
import errno
import gzip
import socket
import sys

from config import ConfigError, Settings
from mailroom import __version__
from mailroom.logs import configure_logging
from store import StoreError

EXIT_FAILED = 1
EXIT_CANNOT_START = 2

S3_VARIABLES = (
    "S3_BUCKET (unset: the embedded store), S3_PREFIX, AWS_ENDPOINT_URL_S3, "
    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, EMBEDDED_S3_PORT"
)
READS = {
    "serve": "PORT, HOST, SERVER, WEB_CONCURRENCY, WEB_THREADS, MAX_WORKERS, MAX_QUEUE, "
    "ACK_MODE, INGEST_TOKENS, OPS_TOKEN, SPOOL_DIR, SHUTDOWN_TIMEOUT, S3_CHECK, ACCESS_LOG, "
    "BATCH_*, LOG_LEVEL, LOG_FORMAT and the rest of docs/configuration.md; " + S3_VARIABLES,
    "list": S3_VARIABLES + ". With no S3_BUCKET it reads the embedded store of a running "
    "`mailroom serve` on this machine.",
    "replay": "SPOOL_DIR, MAX_WORKERS (the default --concurrency), " + S3_VARIABLES,
    "spool": "SPOOL_DIR, and " + S3_VARIABLES + " (to tell this destination's objects from "
    "others')",
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"mailroom: configuration error: {error}", file=sys.stderr)
        return EXIT_CANNOT_START
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "list":
        return _reading_the_store(settings, lambda: _list(settings, args.limit, args.keys_only))
    if args.command in ("replay", "spool"):
        from mailroom.spool_commands import replay_command, spool_command

        if args.command == "spool":
            return spool_command(settings)
        return _reading_the_store(
            settings,
            lambda: replay_command(settings, args.concurrency, args.any_destination),
        )
    try:
        return _serve(settings, getattr(args, "worker", None))
    except (RuntimeError, OSError, StoreError) as error:
        print(f"mailroom: cannot start: {error}", file=sys.stderr)
        return EXIT_CANNOT_START


def _serve(settings: Settings, worker: int | None) -> int:
    if worker is None:  # the main process: check what it can before any worker starts
        _check_port(settings.host, settings.port)
        if settings.s3_check == "strict" and not settings.uses_embedded_store:
            from mailroom.s3_check import check_at_start
            from mailroom.wiring import open_store

            handle = open_store(settings, start_embedded=False)
            check_at_start(handle.store, handle.describe(), "strict")
    if worker is None and settings.server == "granian":
        from mailroom.granian_server import serve_granian

        return serve_granian(settings)
    if worker is None and settings.web_concurrency > 1:
        from mailroom.workers import WorkerPool

        return WorkerPool(settings).run()
    from mailroom.service import serve

    return serve(settings, worker=worker)


def _check_port(host: str, port: int) -> None:
    """PORT taken by something else: say so in one line, naming it, before anything starts."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise RuntimeError(
                    f"PORT={port} is already in use on {host}: stop what listens there or "
                    "set PORT to a free port"
                ) from None
            raise RuntimeError(f"cannot listen on HOST={host} PORT={port}: {error}") from None


def _reading_the_store(settings: Settings, command: object) -> int:
    """Run a command that talks to the store; an unreachable store gets advice, not a trace."""
    try:
        return command()  # type: ignore[operator]
    except StoreError as error:
        print(f"mailroom: {error}", file=sys.stderr)
        if settings.uses_embedded_store:
            advice = (
                "no S3_BUCKET is set, so this reads the embedded store, which lives inside a "
                f"running `mailroom serve` (`make run`) on port {settings.embedded_s3_port}: "
                "start it first, or set S3_BUCKET and credentials for a real bucket"
            )
        else:
            advice = (
                f"check S3_BUCKET={settings.s3_bucket}, AWS_ENDPOINT_URL_S3, the credentials "
                "and the network; the spool keeps everything until S3 can be reached"
            )
        print(f"mailroom: {advice}", file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as error:  # no credentials, for one
        print(f"mailroom: cannot start: {error}", file=sys.stderr)
        return EXIT_CANNOT_START


def _list(settings: Settings, limit: int, keys_only: bool) -> int:
    from mailroom.wiring import open_store

    handle = open_store(settings, start_embedded=False)
    keys = handle.store.list_keys(limit=limit)
    print(f"{len(keys)} object(s) shown from {handle.describe()}", file=sys.stderr)
    for key in keys:
        print(key if keys_only else f"{key}\t{_shown(handle.store.read(key))}")
    return 0


def _shown(body: bytes) -> str:
    """An object's body as text: gzip undone (batches with BATCH_GZIP); other bytes that are
    not UTF-8 (a Parquet batch) as their size."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    try:
        return body.decode()
    except UnicodeDecodeError:
        return f"<{len(body)} bytes, not text>"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailroom",
        description="HTTP collections of payloads in, S3 objects out.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mailroom {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=summary, epilog=f"Environment: {READS[name]}."
        )

    serving = command("serve", "serve POST /payloads on $HOST:$PORT (the default command)")
    serving.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    listing = command("list", "list the keys stored so far, with their bodies")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    listing.add_argument("--keys-only", action="store_true", help="print keys without bodies")
    replaying = command("replay", "upload what the dead-letter spool holds, then empty it")
    replaying.add_argument(
        "--concurrency",
        type=_positive,
        default=None,
        help="objects uploaded at once (default: MAX_WORKERS)",
    )
    replaying.add_argument(
        "--any-destination",
        action="store_true",
        help="also upload objects spooled for another bucket, prefix or endpoint, to this one",
    )
    command("spool", "show what waits in the dead-letter spool")
    return parser


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
