"""zidl's runtime: the one public surface of the transport, clients, servers, signals and errors.

Generated modules import their bases from here; users import the errors, ``NDArray``,
the tuning knobs (``Heartbeat``, ``Limits``) and the CurveZMQ settings
(``CurveServer``, ``CurveClient``, ``write_keypair``).
"""

from ._async_client import AsyncClient, AsyncProperty, AsyncReadOnlyProperty
from ._client import Client
from ._directory import DeviceRecord, Watcher, list_devices, watch
from ._directory import lookup as lookup_device
from ._errors import (
    AuthenticationFailed,
    CallTimeout,
    ClientClosed,
    ConnectionLost,
    DeviceNotFound,
    InterfaceMismatch,
    ProtocolError,
    RegistryUnavailable,
    RemoteError,
    ZidlError,
)
from ._interface import EnumSpec, ErrorSpec, FieldSpec, Interface, MethodSpec, PropertySpec, SignalSpec, StructSpec
from ._ndarray import NDArray
from ._registry import Registry
from ._security import CurveClient, CurveServer, KeyPair, generate_keypair, write_keypair
from ._server import Server
from ._signals import AsyncSignal, ServerSignal, Signal
from ._transport import Heartbeat
from ._wire import Limits

__all__ = [
    "AsyncClient",
    "AsyncProperty",
    "AsyncReadOnlyProperty",
    "AsyncSignal",
    "AuthenticationFailed",
    "CallTimeout",
    "Client",
    "ClientClosed",
    "ConnectionLost",
    "CurveClient",
    "CurveServer",
    "DeviceNotFound",
    "DeviceRecord",
    "EnumSpec",
    "ErrorSpec",
    "FieldSpec",
    "Heartbeat",
    "Interface",
    "InterfaceMismatch",
    "KeyPair",
    "Limits",
    "MethodSpec",
    "NDArray",
    "PropertySpec",
    "ProtocolError",
    "Registry",
    "RegistryUnavailable",
    "RemoteError",
    "Server",
    "ServerSignal",
    "Signal",
    "SignalSpec",
    "StructSpec",
    "Watcher",
    "ZidlError",
    "generate_keypair",
    "list_devices",
    "lookup_device",
    "watch",
    "write_keypair",
]
