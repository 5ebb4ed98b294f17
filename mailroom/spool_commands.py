"""`mailroom replay` and `mailroom spool`: what an operator runs against the spool directory."""

from __future__ import annotations

import sys
import time

from config import Settings
from mailroom.progress import ReplayProgress
from mailroom.wiring import open_spool, open_store
from store.replay import replay


def replay_command(settings: Settings, concurrency: int | None, any_destination: bool) -> int:
    """Replay with a progress display; exit 0 when nothing failed, 1 when something still does."""
    spool = open_spool(settings, any_destination=any_destination)
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
        f"line(s) moved to {spool.directory / 'quarantine'}; {tally.elsewhere} file(s) for "
        "another destination left in place"
    )
    if tally.objects_failed and not tally.objects_landed:
        print(
            f"mailroom: nothing landed: is {handle.describe()} reachable, and are the "
            "credentials allowed to write there? The objects stay in the spool.",
            file=sys.stderr,
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
    print(f"destination       {spool.destination}")
    for where, objects in sorted(census.elsewhere.items()):
        print(f"elsewhere         {objects} object(s) for {where} (not replayed from here)")
    return 0
