"""What an asyncio client hands out to be awaited: its properties, and the connection it is making."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class _Client(Protocol):
    """What a property object asks of its client."""

    async def get(self, prop: str) -> Any: ...

    async def set(self, prop: str, value: Any) -> None: ...

    async def close(self) -> None: ...


C = TypeVar("C", bound=_Client)


class AsyncReadOnlyProperty(Generic[T]):
    """A read-only remote property: ``await client.rotation.get()``."""

    def __init__(self, client: _Client, name: str) -> None:
        self._client = client
        self.name = name

    async def get(self) -> T:
        """Read the value from the device."""
        value: T = await self._client.get(self.name)
        return value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class AsyncProperty(AsyncReadOnlyProperty[T]):
    """A writable remote property: ``await client.mode.get()`` and ``await client.mode.set(value)``."""

    async def set(self, value: T) -> None:
        """Write the value (the device may refuse it)."""
        await self._client.set(self.name, value)


class Connecting(Generic[C]):
    """What ``AsyncClient.connect`` returns: await it for a client, or use it as ``async with``."""

    def __init__(self, connect: Callable[[], Awaitable[C]]) -> None:
        self._connect = connect
        self._client: C | None = None

    def __await__(self) -> Generator[Any, None, C]:
        return self._connect().__await__()

    async def __aenter__(self) -> C:
        self._client = await self._connect()
        return self._client

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.close()
