"""Who calls: the blocking and the asyncio client, their signals and properties."""

from runtime.client.aio import AsyncClient, AsyncProperty, AsyncReadOnlyProperty
from runtime.client.blocking import Client
from runtime.client.signals import AsyncSignal, Signal

__all__ = ["AsyncClient", "AsyncProperty", "AsyncReadOnlyProperty", "AsyncSignal", "Client", "Signal"]
