"""What the blocking and the asyncio client share, written once and without I/O.

Their settings and the interface they speak, each method as a client calls it,
what a reply means, the handshake (the description sent, the one received checked
and adopted), the members made from it, and the policy of following a device: how
long to wait for it and for the registry, when to try again, what a failed lookup
means. As pyzmq's ``zmq/_future.py`` serves ``zmq.asyncio``, the drivers
(``runtime.client.blocking``, ``runtime.client.aio``) add only how they wait.
"""

from __future__ import annotations

import abc
import contextlib
import difflib
import enum
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter

from runtime.client.hub import HubBase
from runtime.client.streaming import StreamState
from runtime.errors import RegistryUnavailable, ZidlError
from runtime.protocol.messages import hello_body, outcome, read_hello_reply
from runtime.protocol.names import HELLO, STREAM
from runtime.protocol.wire import WRITERS, Limits, Writer
from runtime.schema.compat import check
from runtime.schema.interface import Interface
from runtime.schema.validation import InterfaceBound, Tables, tables
from runtime.transport.addresses import substitute_host
from runtime.transport.security import CurveClient
from runtime.transport.sockets import Heartbeat

logger = logging.getLogger(__name__)

SignalT = TypeVar("SignalT")
HubT = TypeVar("HubT", bound=HubBase[Any])

DEFAULT_TIMEOUT: Final = 5.0
"""Seconds a handshake, property read or write, or subscription waits unless ``timeout=`` says otherwise."""

FIRST_RETRY: Final = 0.1
"""Seconds before a follower tries again to find a device it lost, doubled after each failure..."""

LAST_RETRY: Final = 5.0
"""...up to this: a device that stays away costs a handshake (and a registry lookup) every 5 s."""

WARN_AFTER: Final = 3
"""Failed attempts after which a follower warns that the device is still away (once per loss)."""

REGISTRY_PATIENCE: Final = 1.0
"""Longest wait of a follower for the registry, which answers in milliseconds: ``close()`` waits for it."""


def device_patience(timeout: float | None) -> float:
    """How long following waits for a device: the client's timeout, or the default when it has none."""
    return timeout if timeout is not None else DEFAULT_TIMEOUT


def curve_towards(curve: CurveClient | None, public_key: str | None) -> CurveClient | None:
    """How a client found by name reaches its device: over Curve when the registry gives the device a public key,
    with ``curve``'s key pair (whose server key is the registry's) or a new one; without a key, in the clear."""
    return (curve or CurveClient(None)).towards(public_key)


def retry_level(attempt: int) -> int:
    """The log level of a follower's failed attempt: INFO, one WARNING, then quiet (it goes on every 5 s)."""
    if attempt == WARN_AFTER:
        return logging.WARNING
    return logging.INFO if attempt < WARN_AFTER else logging.DEBUG


class Retries:
    """A follower's attempts to find its device again after one loss: each failure logged at ``retry_level``, and a
    pause before the next that starts at ``FIRST_RETRY`` and doubles up to ``LAST_RETRY``."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._attempt = 0
        self._pause = FIRST_RETRY

    def failed(self, exc: ZidlError) -> float:
        """Log a failed attempt; the seconds to pause before the next (a new loss of signals cuts it short)."""
        self._attempt += 1
        level = retry_level(self._attempt)
        logger.log(level, "%s: the device is still away (attempt %d): %s", self._what, self._attempt, exc)
        pause, self._pause = self._pause, min(2 * self._pause, LAST_RETRY)
        return pause

    def succeeded(self) -> None:
        logger.info("%s: found the device again", self._what)


class OwnTimeout(enum.Enum):
    """The type of ``OWN_TIMEOUT``."""

    OWN = "own"

    def __repr__(self) -> str:
        return "<the method's own timeout>"


OWN_TIMEOUT: Final = OwnTimeout.OWN
"""``call(..., timeout=)`` not given: the method's own timeout from its IDL (None there means no limit)."""


@dataclass(frozen=True, slots=True)
class ClientMethod:
    """What a client needs to call one method, gathered once per method rather than once per call."""

    validate_args: Callable[[Any], BaseModel]
    """Validates a dict of arguments into a model whose ``__dict__`` holds the values to send."""
    validate_result: Callable[[Any], Any]
    write: Writer
    oneway: bool
    timeout: float | None
    validate_item: Callable[[Any], Any] | None = None
    """A stream's: validates each item (None: not a stream)."""
    latest: bool = False


def _client_methods(table: Tables) -> dict[str, ClientMethod]:
    return {
        name: ClientMethod(
            plan.validate_args,
            plan.validate_result,
            WRITERS[plan.args_shape],
            plan.spec.oneway,
            plan.spec.timeout,
            plan.validate_item,
            plan.spec.latest,
        )
        for name, plan in table.calls.items()
    }


class ClientCore(InterfaceBound, abc.ABC, Generic[SignalT]):
    """The state and the decisions of a client that do not depend on how it waits (``Client``, ``AsyncClient``)."""

    def __init__(
        self, address: str, timeout: float | None, heartbeat: Heartbeat, limits: Limits, curve: CurveClient | None
    ) -> None:
        self._address = address
        self._timeout = timeout
        self._heartbeat = heartbeat
        self._limits = limits
        self._curve = curve
        self._tables: Tables | None = type(self)._zidl_tables
        self._methods: dict[str, ClientMethod] = _client_methods(self._tables) if self._tables is not None else {}
        self._server_interface: Interface | None = None
        self._signal_address: str | None = None
        self._signals: dict[str, SignalT] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._greeted_once = False
        """A handshake has succeeded: from then on a connection that fails is waited for (the device restarts)."""
        if self._tables is not None:
            self._make_members(self._tables.interface)

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
            raise self._unknown("signal", name, self._signals) from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._address}{' closed' if self._closed else ''}>"

    # --- what each driver provides --------------------------------------------------------------------

    @abc.abstractmethod
    def _new_signal(self, name: str) -> SignalT:
        """The driver's signal object for signal ``name``."""

    @abc.abstractmethod
    def _members_as_attributes(self) -> bool:
        """Whether signals (and an asyncio client's properties) are attributes too: on any subclass of a driver's
        client, which a generated client is; not on the driver's own, whose names come from the server."""

    # --- methods, properties and signals by name; replies ------------------------------------------------

    def _method(self, name: str) -> ClientMethod:
        method = self._methods.get(name)
        if method is None:
            raise self._no_method(name)
        return method

    def _no_method(self, name: str) -> ZidlError:
        return self._unknown("method", name, self._methods)

    def _new_stream(
        self, name: str, args: dict[str, Any]
    ) -> tuple[ClientMethod, dict[str, Any], StreamState[Any, Any]]:
        """Stream method ``name`` (one that is not a stream is called, not opened), ``args`` validated into the values
        to send, and the stream as its reader sees it, whose final reply means what a call's reply means."""
        method = self._method(name)
        if method.validate_item is None:
            raise ZidlError(f"{self._what()}: {name} is not a stream; call it")
        values = method.validate_args(args).__dict__
        state: StreamState[Any, Any] = StreamState(
            method.latest,
            method.validate_item,
            method.validate_result,
            lambda kind, body: self._outcome(kind, body, STREAM, name),
        )
        return method, values, state

    def _value(self, name: str) -> TypeAdapter[Any]:
        """The validator of property ``name``."""
        values = self._table().values
        if name not in values:
            raise self._unknown("property", name, values)
        return values[name]

    def _unknown(self, kind: str, name: str, known: Iterable[str]) -> ZidlError:
        """The error for a method, property or signal the device does not have, naming those it has."""
        self._table()  # raises when not connected yet
        plural = "properties" if kind == "property" else f"{kind}s"
        known = list(known)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ZidlError(f"{self._what()} has no {kind} {name!r} (its {plural}: {', '.join(known) or 'none'}){hint}")

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

    def _outcome(self, kind: Any, body: Any, request_kind: str, name: str | None) -> Any:
        """What a reply of ``kind`` to a request means: its body, or the error it carries raised."""
        declared = self._tables.declared if self._tables is not None else {}
        return outcome(kind, body, declared, self._where(request_kind, name))

    # --- the handshake ------------------------------------------------------------------------------

    def _hello(self) -> dict[str, Any]:
        """The body of this client's handshake: its description (None for a client without generated code)."""
        return hello_body(self._tables.interface if self._tables is not None else None)

    def _greeted(self, reply: Any) -> str:
        """Take the server's handshake reply: its description checked against this client's (``InterfaceMismatch``;
        a compatible difference is logged) and adopted; returns the signal address, as reachable from here."""
        mine = self._tables.interface if self._tables is not None else None
        theirs, signals = read_hello_reply(reply, self._address)
        if mine is not None:
            differences = check(mine, theirs)
            if differences:
                logger.warning(
                    "client %s v%d / server %s v%d at %s differ (compatible): %s",
                    mine.name,
                    mine.version,
                    theirs.name,
                    theirs.version,
                    self._address,
                    "; ".join(differences),
                )
        self._server_interface = theirs
        self._greeted_once = True
        if self._tables is None:  # a plain ``Client.connect``: its methods and signals are the server's
            self._tables = tables(theirs)
            self._methods = _client_methods(self._tables)
            self._make_members(theirs)
        return substitute_host(signals, self._address)

    def _refused(self, kind: str, by_name: bool) -> str | None:
        """Why a request that cannot be sent ends at once, with ``CallTimeout``, when nothing listens at the
        address (the driver asks ``nothing_listens``): only the first handshake of a client connected by address.
        A device found by name, or one that answered before, is waited for, as it may be restarting."""
        if kind != HELLO or by_name or self._greeted_once:
            return None
        return f"{self._what()}: nothing listens at {self._address} (connection refused)"

    def _make_members(self, interface: Interface) -> None:
        """The signals of ``interface``, also as attributes where ``_members_as_attributes`` says."""
        as_attributes = self._members_as_attributes()
        for spec in interface.signals:
            signal = self._new_signal(spec.name)
            self._signals[spec.name] = signal
            if as_attributes:
                object.__setattr__(self, spec.name, signal)

    def _new_hub(self, kind: type[HubT], *, lost: Callable[[], None]) -> HubT:
        """A signal hub of ``kind`` for the signal address the handshake named, with this client's settings."""
        if self._signal_address is None:
            raise ZidlError(f"{self._what()}: connect before using signals")
        return kind(
            self._signal_address,
            self._table(),
            self._what(),
            curve=self._curve,
            heartbeat=self._heartbeat,
            patience=device_patience(self._timeout),
            lost=lost,
            limits=self._limits,
        )

    # --- following the device ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _or_last_address(self) -> Iterator[None]:
        """Around a follower's lookup: a registry that does not answer does not stop a try at the last address (the
        device may have restarted there); a device the registry does not know is not back yet (the error goes on)."""
        try:
            yield
        except RegistryUnavailable as exc:
            logger.info("%s: %s; trying the last address", self._what(), exc)

    @contextlib.contextmanager
    def _or_stay(self) -> Iterator[None]:
        """Around the lookup for a request that could not be sent: whatever fails, the request waits where it is."""
        try:
            yield
        except ZidlError as exc:
            logger.info("%s: could not look the device up again: %s", self._what(), exc)
