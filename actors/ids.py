"""Identifiers unique across threads, processes and hosts, cheap enough for every payload.

A random 96-bit process tag (re-drawn in a forked child) plus a counter: no clock involved,
so two payloads in the same nanosecond on two hosts still get different ids.
"""

from __future__ import annotations

import itertools
import os

_tag = ""
_counter = itertools.count()


def _new_process_tag() -> None:
    global _tag, _counter
    _tag = os.urandom(12).hex()
    _counter = itertools.count()


_new_process_tag()
os.register_at_fork(after_in_child=_new_process_tag)


def new_id() -> str:
    """Return an id no process ever returned before (`itertools.count` is atomic)."""
    return f"{_tag}{next(_counter):08x}"
