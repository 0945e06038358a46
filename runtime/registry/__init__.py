"""The device registry: the registry server, the client side (look up, list, watch) and a device's registration."""

from runtime.registry.client import DeviceRecord, RegistryClient, Watcher, list_devices, lookup, watch
from runtime.registry.server import DEFAULT_REGISTRY, Registry

__all__ = [
    "DEFAULT_REGISTRY",
    "DeviceRecord",
    "Registry",
    "RegistryClient",
    "Watcher",
    "list_devices",
    "lookup",
    "watch",
]
