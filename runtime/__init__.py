"""zidl's runtime: the one public surface of the transport, clients, servers, signals and errors.

Generated modules import their bases from here; users import the errors, ``NDArray``,
the tuning knobs (``Heartbeat``, ``Limits``) and the CurveZMQ settings
(``CurveServer``, ``CurveClient``, ``write_keypair``).
"""

from runtime.client import AsyncClient, AsyncProperty, AsyncReadOnlyProperty, AsyncSignal, Client, Signal
from runtime.errors import (
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
from runtime.protocol import Limits
from runtime.registry import DeviceRecord, Registry, Watcher, list_devices, watch
from runtime.registry import lookup as lookup_device
from runtime.schema import (
    EnumSpec,
    ErrorSpec,
    FieldSpec,
    Interface,
    MethodKind,
    MethodSpec,
    NDArray,
    PropertySpec,
    SignalSpec,
    StructSpec,
)
from runtime.server import Server, ServerSignal, Usage
from runtime.transport import CurveClient, CurveServer, Heartbeat, KeyPair, generate_keypair, write_keypair

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
    "MethodKind",
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
    "Usage",
    "Watcher",
    "ZidlError",
    "generate_keypair",
    "list_devices",
    "lookup_device",
    "watch",
    "write_keypair",
]
