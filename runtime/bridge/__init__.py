"""The bridge: the devices of one registry served to the clients of another, from a host on both networks.

``bridge`` follows both registries; ``device`` is one device's face on B's side, ``intake``
what arrives there; ``upstream`` its connections towards the device; ``signals`` the
XSUB/XPUB forwarder; ``held`` the requests waiting while a device is away; ``loop`` the
thread that owns every socket.
"""

from runtime.bridge.bridge import Bridge
from runtime.bridge.usage import BridgeUsage

__all__ = ["Bridge", "BridgeUsage"]
