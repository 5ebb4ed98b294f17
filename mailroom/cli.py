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
    commands.add_parser("replay", help="upload what the dead-letter spool holds, then empty it")
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
        if args.command == "replay":
            return _replay(settings)
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


def _replay(settings: Settings) -> int:
    """Exit 0 when the spool is empty afterwards, 1 when something still fails."""
    from mailroom.wiring import open_spool, open_store

    spool = open_spool(settings)
    objects, payloads = spool.size()
    handle = open_store(settings, start_embedded=False)
    result = spool.replay(handle.store.put)
    print(
        f"replayed {spool.directory}: {result.landed} of {payloads} payload(s) in {objects} "
        f"object(s) landed in {handle.describe()}; {result.failed} still failing"
    )
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
