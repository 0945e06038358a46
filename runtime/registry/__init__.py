"""The device registry: the registry server, the client side (look up, list, watch) and a device's registration."""

from runtime.registry.client import (
    DeviceRecord,
    RegistryClient,
    list_devices,
    list_devices_async,
    lookup,
    lookup_async,
    registry_address,
)
from runtime.registry.registration import Registration
from runtime.registry.server import DEFAULT_REGISTRY, Registry
from runtime.registry.watcher import Watcher, watch

__all__ = [
    "DEFAULT_REGISTRY",
    "DeviceRecord",
    "Registration",
    "Registry",
    "RegistryClient",
    "Watcher",
    "list_devices",
    "list_devices_async",
    "lookup",
    "lookup_async",
    "registry_address",
    "watch",
]
