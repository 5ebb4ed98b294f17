"""The `mailroom` command: serve, or look at what landed."""

from __future__ import annotations

import argparse
import sys

from config import ConfigError, Settings
from mailroom.logs import configure_logging
from store import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailroom", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serving = commands.add_parser("serve", help="serve POST /payloads on $PORT (the default)")
    serving.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    listing = commands.add_parser("list", help="list the keys stored so far, with their bodies")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    listing.add_argument("--keys-only", action="store_true", help="print keys without bodies")
    replaying = commands.add_parser(
        "replay", help="upload what the dead-letter spool holds, then empty it"
    )
    replaying.add_argument(
        "--concurrency",
        type=_positive,
        default=None,
        help="objects uploaded at once (default: MAX_WORKERS)",
    )
    commands.add_parser("spool", help="show what waits in the dead-letter spool")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"mailroom: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "list":
            return _list(settings, args.limit, args.keys_only)
        if args.command in ("replay", "spool"):
            from mailroom.spool_commands import replay_command, spool_command

            if args.command == "spool":
                return spool_command(settings)
            return replay_command(settings, args.concurrency)
        worker = getattr(args, "worker", None)
        if worker is None and settings.server == "granian":
            from mailroom.granian_server import serve_granian

            return serve_granian(settings)
        if worker is None and settings.web_concurrency > 1:
            from mailroom.workers import WorkerPool

            return WorkerPool(settings).run()
        from mailroom.service import serve

        return serve(settings, worker=worker)
    except StoreError as error:
        print(f"mailroom: {error}", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as error:
        print(f"mailroom: cannot start: {error}", file=sys.stderr)
        return 1


def _list(settings: Settings, limit: int, keys_only: bool) -> int:
    from mailroom.wiring import open_store

    handle = open_store(settings, start_embedded=False)
    keys = handle.store.list_keys(limit=limit)
    print(f"{len(keys)} object(s) shown from {handle.describe()}", file=sys.stderr)
    for key in keys:
        print(key if keys_only else f"{key}\t{handle.store.read(key).decode()}")
    return 0


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
