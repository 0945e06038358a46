"""What arrives at a bridged device's ROUTER from B's side: its limits checked as its frames come in.

As a device's own intake (``runtime.server.intake``): a message over ``Limits`` is
read off the socket and dropped frame by frame as it comes, its small header kept
for the id its refusal carries; only a whole message within the limits is handled.
The first message of each caller says which connection it came on
(``runtime.transport.callers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from runtime.protocol.limits import Limits
from runtime.server.intake import drop_rest
from runtime.transport.callers import Callers
from runtime.transport.sockets import NOBLOCK, Socket, readable

BATCH: Final = 64
"""Messages read off one socket in one turn of the loop, before the other sockets are looked at."""


def read_requests(
    router: Socket,
    callers: Callers,
    limits: Limits,
    request: Callable[[bytes, list[Any]], None],
    refuse: Callable[[bytes, Any, str], None],
) -> None:
    """Read what B's side sent: each message within ``limits`` to ``request(caller, frames)``, each over them to
    ``refuse(caller, header, why)``; up to ``BATCH`` messages, while more wait."""
    for turn in range(BATCH):  # the poll said one is waiting; more while more are (no zmq.Again to raise)
        if turn and not readable(router):
            return
        frame = router.recv(NOBLOCK, copy=False)
        caller = frame.bytes
        if caller not in callers.sources:
            callers.note(caller, frame)
        if not frame.more:
            continue
        frame = router.recv(copy=False)
        if len(frame) > limits.max_header_bytes:
            refuse(caller, frame, drop_rest(router, frame, frame, 1, len(frame), limits))
            continue
        message: list[Any] = [frame]
        size = len(frame)
        while frame.more:
            frame = router.recv(copy=False)
            message.append(frame)
            size += len(frame)
            if size > limits.max_bytes or len(message) > limits.max_frames:
                refuse(caller, message[0], drop_rest(router, message[0], frame, len(message), size, limits))
                break
        else:
            request(caller, message)
