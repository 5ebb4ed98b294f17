"""The actor system: a router over a fixed pool of uploaders, each with a bounded mailbox.

Knows nothing of HTTP: the web layer hands it documents through `Dispatcher`.
"""

from actors.dispatcher import Dispatcher, Outcome, Refused
from actors.messages import Payload
from actors.router import RouterActor
from actors.system import ActorSystem
from actors.uploader import UploaderActor

__all__ = [
    "ActorSystem",
    "Dispatcher",
    "Outcome",
    "Payload",
    "Refused",
    "RouterActor",
    "UploaderActor",
]
