"""Process-wide logging set-up: one line per event, quiet libraries."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug", "pykka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
