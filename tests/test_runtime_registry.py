"""Devices served with a name are found by name, and a client found by name follows its device."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import AsyncEchoClient, EchoClient

from runtime import DeviceNotFound
from runtime.registry import Registry


@pytest.fixture
def registry() -> Iterator[str]:
    with Registry(ttl=0.6, heartbeat=0.2).running("tcp://127.0.0.1:0") as address:
        yield address


def test_client_found_by_name_follows_its_device_to_a_new_port(registry: str) -> None:
    with Echo().running("tcp://127.0.0.1:0", registry=registry, name="echo-1", heartbeat=FAST_HEARTBEAT) as first:
        client = EchoClient.lookup("echo-1", registry=registry, timeout=1.0, heartbeat=FAST_HEARTBEAT)
        assert client.address == first
        assert client.add(1) == 2
    try:
        with Echo().running("tcp://127.0.0.1:0", registry=registry, name="echo-1", heartbeat=FAST_HEARTBEAT) as second:
            assert second != first
            assert client.add(2, timeout=10.0) == 3
            assert client.address == second
    finally:
        client.close()


def test_lookup_of_unknown_name_raises_device_not_found(registry: str) -> None:
    with pytest.raises(DeviceNotFound):
        EchoClient.lookup("nobody", registry=registry, timeout=1.0)


def test_async_lookup(registry: str) -> None:
    async def main() -> int:
        async with AsyncEchoClient.lookup("echo-2", registry=registry) as client:
            return await client.add(20, 22)

    with Echo().running("tcp://127.0.0.1:0", registry=registry, name="echo-2"):
        assert asyncio.run(main()) == 42
