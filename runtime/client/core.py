"""What the blocking and the asyncio client share: their settings, the interface they speak, and how they name
themselves and their requests in errors."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter

from runtime.client.signals import HubBase
from runtime.errors import ZidlError
from runtime.protocol.wire import Limits
from runtime.schema.interface import Interface
from runtime.schema.validation import CallPlan, InterfaceBound, Tables, tables
from runtime.transport.security import CurveClient
from runtime.transport.sockets import Heartbeat

SignalT = TypeVar("SignalT")
HubT = TypeVar("HubT", bound=HubBase)


class ClientBase(InterfaceBound, Generic[SignalT]):
    """The state and the checks of a client that do not depend on how it waits (``Client``, ``AsyncClient``)."""

    def __init__(
        self, address: str, timeout: float | None, heartbeat: Heartbeat, limits: Limits, curve: CurveClient | None
    ) -> None:
        self._address = address
        self._timeout = timeout
        self._heartbeat = heartbeat
        self._limits = limits
        self._curve = curve
        self._tables: Tables | None = type(self)._zidl_tables
        self._calls: dict[str, CallPlan] = self._tables.calls if self._tables is not None else {}
        self._server_interface: Interface | None = None
        self._signal_address: str | None = None
        self._signals: dict[str, SignalT] = {}
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def address(self) -> str:
        return self._address

    @property
    def interface(self) -> Interface:
        """The server's interface description (from the handshake), or this client's before it."""
        if self._server_interface is not None:
            return self._server_interface
        if self._tables is None:
            raise ZidlError("the client has not connected yet")
        return self._tables.interface

    def signal(self, name: str) -> SignalT:
        """The signal ``name`` (generated clients also have it as an attribute)."""
        try:
            return self._signals[name]
        except KeyError:
            raise ZidlError(f"{self._what()} has no signal {name!r}") from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._address}{' closed' if self._closed else ''}>"

    def _no_method(self, name: str) -> ZidlError:
        self._table()  # raises when not connected yet
        return ZidlError(f"{self._what()} has no method {name!r}")

    def _value(self, name: str) -> TypeAdapter[Any]:
        """The validator of property ``name``."""
        table = self._table()
        if name not in table.values:
            raise ZidlError(f"{self._what()} has no property {name!r}")
        return table.values[name]

    def _table(self) -> Tables:
        if self._tables is None:
            raise ZidlError(f"{self._what()}: not connected yet")
        return self._tables

    def _what(self) -> str:
        name = self._tables.interface.name if self._tables is not None else "device"
        return f"{name} at {self._address}"

    def _where(self, kind: str, name: str | None) -> str:
        """A request as error messages name it; made only when one is needed."""
        return f"{self._what()}: {kind} {name}" if name else f"{self._what()}: {kind}"

    def _new_hub(self, kind: type[HubT], *, patience: float, lost: Callable[[], None]) -> HubT:
        """A signal hub of ``kind`` for the signal address the handshake named, with this client's settings."""
        if self._signal_address is None:
            raise ZidlError(f"{self._what()}: connect before using signals")
        return kind(
            self._signal_address,
            self._table(),
            self._what(),
            curve=self._curve,
            heartbeat=self._heartbeat,
            patience=patience,
            lost=lost,
            limits=self._limits,
        )

    def _adopt(self, theirs: Interface) -> bool:
        """Take the server's description from a handshake; True when this client had none of its own (a plain
        ``Client.connect``), whose signals are then to be made from it."""
        self._server_interface = theirs
        if self._tables is not None:
            return False
        self._tables = tables(theirs)
        self._calls = self._tables.calls
        return True
