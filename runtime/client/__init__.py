"""Who calls: the shared client core, the blocking and the asyncio driver, their signals, properties and streams."""

from runtime.client.aio import AsyncClient
from runtime.client.aio_signals import AsyncSignal
from runtime.client.aio_stream import AsyncStream
from runtime.client.awaitables import AsyncProperty, AsyncReadOnlyProperty
from runtime.client.blocking import Client
from runtime.client.blocking_stream import Stream
from runtime.client.signals import Signal

__all__ = [
    "AsyncClient",
    "AsyncProperty",
    "AsyncReadOnlyProperty",
    "AsyncSignal",
    "AsyncStream",
    "Client",
    "Signal",
    "Stream",
]
