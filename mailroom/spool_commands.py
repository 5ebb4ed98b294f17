"""`mailroom replay` and `mailroom spool`: what an operator runs against the spool directory."""

from __future__ import annotations

import sys
import time

from config import Settings
from mailroom.progress import ReplayProgress
from mailroom.wiring import open_spool, open_store
from store.replay import replay


def replay_command(settings: Settings, concurrency: int | None) -> int:
    """Replay with a progress display; exit 0 when nothing failed, 1 when something still does."""
    spool = open_spool(settings)
    width = concurrency or settings.max_workers
    census = spool.census()
    handle = open_store(settings, start_embedded=False, connections=width)
    progress = ReplayProgress(census, stream=sys.stderr)
    started = time.monotonic()
    try:
        tally = replay(spool, handle.store.put, concurrency=width, progress=progress)
    finally:
        progress.close()
    seconds = time.monotonic() - started
    print(
        f"replayed {spool.directory} into {handle.describe()} in {seconds:.1f} s "
        f"({width} at a time): {tally.objects_landed} object(s) holding {tally.landed} "
        f"payload(s) landed; {tally.objects_failed} object(s) holding {tally.failed} "
        f"payload(s) still failing, kept in the spool; {tally.quarantined} unreadable "
        f"line(s) moved to {spool.directory / 'quarantine'}"
    )
    return 0 if tally.failed == 0 else 1


def spool_command(settings: Settings) -> int:
    """Print what waits in the spool; exit 0 whether or not anything waits."""
    spool = open_spool(settings)
    census = spool.census()
    age = "-" if census.oldest_age is None else f"{census.oldest_age:.0f} s"
    print(f"spool directory   {spool.directory}")
    print(f"files             {census.files}")
    print(f"objects           {census.objects}")
    print(f"payloads          {census.payloads}")
    print(f"bytes             {census.bytes}")
    print(f"oldest            {age}")
    return 0
