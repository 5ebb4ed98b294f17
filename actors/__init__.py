"""The actor system: a supervised router over a fixed pool of supervised uploaders.

Knows nothing of HTTP: the web layer hands it documents through `Dispatcher`.
"""

from actors.dispatcher import Dispatcher, Outcome, Refused, Tracking
from actors.ids import new_id
from actors.messages import Collection, Payload
from actors.router import RouterActor
from actors.system import ActorSystem, SystemSnapshot
from actors.uploader import UploaderActor

__all__ = [
    "ActorSystem",
    "Collection",
    "Dispatcher",
    "Outcome",
    "Payload",
    "Refused",
    "RouterActor",
    "SystemSnapshot",
    "Tracking",
    "UploaderActor",
    "new_id",
]
