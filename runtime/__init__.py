"""zidl's runtime: the one public surface of the transport, clients, servers, signals and errors.

Generated modules import their bases from here; users import the errors, ``NDArray``,
the tuning knobs (``Heartbeat``, ``Limits``) and the CurveZMQ settings
(``CurveServer``, ``CurveClient``, ``write_keypair``).
"""

from runtime.client.aio import AsyncClient, AsyncProperty, AsyncReadOnlyProperty
from runtime.client.blocking import Client
from runtime.client.signals import AsyncSignal, ServerSignal, Signal
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
from runtime.protocol.wire import Limits
from runtime.registry.client import DeviceRecord, Watcher, list_devices, watch
from runtime.registry.client import lookup as lookup_device
from runtime.registry.server import Registry
from runtime.schema.interface import (
    EnumSpec,
    ErrorSpec,
    FieldSpec,
    Interface,
    MethodSpec,
    PropertySpec,
    SignalSpec,
    StructSpec,
)
from runtime.schema.ndarray import NDArray
from runtime.server.base import Server
from runtime.transport.security import CurveClient, CurveServer, KeyPair, generate_keypair, write_keypair
from runtime.transport.sockets import Heartbeat

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
