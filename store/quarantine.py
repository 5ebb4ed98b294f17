"""Where the spool puts what it cannot read: never deleted, never blocking the rest.

A line that does not decode is appended to `quarantine/<file>.bad`; a temporary file left by
a writer that died (a torn write) is moved there whole. Each move is logged as an error with
the file and the line numbers, so an operator can look at exactly those bytes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("store.spool")


class Quarantine:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def lines(self, source: str, lines: list[tuple[int, bytes]]) -> None:
        """Keep the unreadable (line number, line) pairs of spool file `source`."""
        target = self._ready() / f"{source}.bad"
        with open(target, "ab") as handle:
            handle.write(b"".join(line + b"\n" for _, line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        numbers = ", ".join(str(number) for number, _ in lines[:10])
        log.error(
            "spool file %s: %d line(s) could not be read (line %s) and were moved to %s; "
            "the file's other objects are replayed",
            source,
            len(lines),
            numbers,
            target,
            extra={"event": "spool_quarantined", "file": source, "lines": len(lines)},
        )

    def file(self, path: Path, why: str) -> None:
        """Move a whole file aside."""
        target = self._ready() / path.name.removeprefix(".")
        os.replace(path, target)
        log.error(
            "spool: moved %s to %s: %s",
            path.name,
            target,
            why,
            extra={"event": "spool_quarantined", "file": path.name, "lines": None},
        )

    def _ready(self) -> Path:
        self.directory.mkdir(exist_ok=True)
        return self.directory
