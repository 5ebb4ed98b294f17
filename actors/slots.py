"""The uploader slots and the room left in their mailboxes.

The router alone changes the table and alone puts payloads into mailboxes, so its counts are
exact for it. Other threads may read it too: `Dispatcher` refuses a collection at once when
there is plainly no room, without a round trip through the router's thread.
"""

from __future__ import annotations

from typing import Any

import pykka


class SlotTable:
    def __init__(self, refs: list[pykka.ActorRef[Any] | None], max_queue: int) -> None:
        self.refs = list(refs)
        self.max_queue = max_queue

    def __len__(self) -> int:
        return len(self.refs)

    def room(self, slot: int) -> int:
        ref = self.refs[slot]
        if ref is None or not ref.is_alive():
            return 0
        return max(self.max_queue - ref.actor_inbox.qsize(), 0)

    def total_room(self) -> int:
        return sum(self.room(slot) for slot in range(len(self.refs)))

    def any_alive(self) -> bool:
        return any(ref is not None and ref.is_alive() for ref in self.refs)

    def depth(self, slot: int) -> int:
        ref = self.refs[slot]
        return ref.actor_inbox.qsize() if ref is not None else 0
