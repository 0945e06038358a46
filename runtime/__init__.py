"""zidl's runtime: the one public surface of the transport, clients, servers, signals, errors and the bridge.

Generated modules import their bases (and ``Stream``, ``AsyncStream``) from here; users
import the errors, ``NDArray``, ``current_call`` (inside an implementation), the tuning
knobs (``Heartbeat``, ``Limits``) and the CurveZMQ settings
(``CurveServer``, ``CurveClient``, ``write_keypair``).
"""

from runtime.bridge import Bridge, BridgeUsage
from runtime.client import (
    AsyncClient,
    AsyncProperty,
    AsyncReadOnlyProperty,
    AsyncSignal,
    AsyncStream,
    Client,
    Signal,
    Stream,
)
from runtime.errors import (
    AuthenticationFailed,
    CallTimeout,
    Cancelled,
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
from runtime.server import CallContext, Server, ServerSignal, Usage, current_call
from runtime.transport import CurveClient, CurveServer, Heartbeat, KeyPair, generate_keypair, write_keypair

__all__ = [
    "AsyncClient",
    "AsyncProperty",
    "AsyncReadOnlyProperty",
    "AsyncSignal",
    "AsyncStream",
    "AuthenticationFailed",
    "Bridge",
    "BridgeUsage",
    "CallContext",
    "CallTimeout",
    "Cancelled",
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
    "Stream",
    "StructSpec",
    "Usage",
    "Watcher",
    "ZidlError",
    "current_call",
    "generate_keypair",
    "list_devices",
    "lookup_device",
    "watch",
    "write_keypair",
]
