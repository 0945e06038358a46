"""What arrives at a running server's ROUTER: its limits, checked as its frames come in (``Engine._lead``).

A message over ``Limits`` is not kept: its header, when small, gives the id its
refusal carries, and the rest is read off the socket and dropped as it comes (libzmq
hands a message over only whole, so frame by frame, about a microsecond each), so the
stream stays in step and the memory the message took is let go at once.
"""

from __future__ import annotations

from typing import Any, Final

import zmq

from runtime.protocol.limits import Limits
from runtime.protocol.wire import too_large_header
from runtime.transport.sockets import Socket

_MARGIN: Final = 64 * 1024 * 1024


def configure(router: Socket, limits: Limits) -> None:
    """libzmq's own last line: a peer that sends a single frame far above ``max_bytes`` is disconnected.

    Every message over the limits but under this (twice the limit, and 64 MiB more at least) gets an error reply.
    """
    most = max(limits.max_bytes, limits.max_header_bytes)
    router.setsockopt(zmq.MAXMSGSIZE, most + max(most, _MARGIN))


def drop_rest(router: Socket, header: Any, frame: zmq.Frame, count: int, size: int, limits: Limits) -> str:
    """Read off and drop the rest of a message over ``limits`` whose frames so far were ``count`` frames of ``size``
    bytes, ``frame`` the last read; why it is refused."""
    recv = router.recv
    while frame.more:
        frame = recv(copy=False)
        count += 1
        size += len(frame)
    if len(header) > limits.max_header_bytes:
        return too_large_header(len(header), limits)
    if count > limits.max_frames:
        return f"message has {count} frames, more than the limit of {limits.max_frames}"
    return f"message has {size} bytes, more than the limit of {limits.max_bytes}"
