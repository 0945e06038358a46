"""The peers: Pyro5 (msgpack serializer), zerorpc and gRPC, serving the small call and a bytes producer.

They are optional (the ``bench`` extra installs them), so each is imported inside the
functions that use it and ``available()`` says which are there. gRPC's stubs are
made at bench time by ``grpc_tools.protoc`` into a temporary folder (``grpc_stubs``)
whose path both sides are given. Every server binds the loopback and sends its
address to the parent, like the servers of ``bench.servers``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent import futures
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.clients import answer, latency, throughput
from bench.servers import payload, small_result

_MAX_MESSAGE = 256 * 1024 * 1024
_PROTO = """
syntax = "proto3";
package zidlbench;
service Bench {
  rpc Small (SmallRequest) returns (SmallReply);
  rpc MakeBytes (BytesRequest) returns (BytesReply);
}
message SmallRequest { int64 a = 1; double b = 2; }
message SmallReply { map<string, double> values = 1; }
message BytesRequest { int64 size = 1; }
message BytesReply { bytes data = 1; }
"""
_MODULES = {"Pyro5 (msgpack)": ("Pyro5", "msgpack"), "zerorpc": ("zerorpc",), "gRPC": ("grpc", "grpc_tools")}


def available() -> list[str]:
    """The peers whose packages are installed."""
    return [peer for peer, modules in _MODULES.items() if all(importlib.util.find_spec(m) for m in modules)]


@contextlib.contextmanager
def grpc_stubs() -> Iterator[str]:
    """A temporary folder holding ``bench_pb2`` and ``bench_pb2_grpc``, made by ``grpc_tools.protoc``."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="zidl-bench-grpc-") as folder:
        (Path(folder) / "bench.proto").write_text(_PROTO)
        if protoc.main(
            ["protoc", f"-I{folder}", f"--python_out={folder}", f"--grpc_python_out={folder}", "bench.proto"]
        ):
            raise RuntimeError("grpc_tools.protoc could not compile the benchmark's .proto")
        yield folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- servers ------------------------------------------------------------------------------------


def pyro_server(link: Connection, stubs: str) -> None:
    import Pyro5.api

    Pyro5.api.config.SERIALIZER = "msgpack"

    @Pyro5.api.expose
    class PyroBench:
        def small(self, a: int, b: float) -> dict[str, float]:
            return small_result(a, b)

        def make_bytes(self, size: int) -> bytes:
            return payload(size)

    with Pyro5.api.Daemon(host="127.0.0.1") as daemon:
        link.send(str(daemon.register(PyroBench())))
        daemon.requestLoop()


def zerorpc_server(link: Connection, stubs: str) -> None:
    import zerorpc

    class ZerorpcBench:
        def small(self, a: int, b: float) -> dict[str, float]:
            return small_result(a, b)

        def make_bytes(self, size: int) -> bytes:
            return payload(size)

    address = f"tcp://127.0.0.1:{_free_port()}"
    server = zerorpc.Server(ZerorpcBench(), heartbeat=None)
    server.bind(address)
    link.send(address)
    server.run()


def grpc_server(link: Connection, stubs: str) -> None:
    import grpc

    sys.path.insert(0, stubs)
    import bench_pb2
    import bench_pb2_grpc

    class GrpcBench(bench_pb2_grpc.BenchServicer):  # type: ignore[misc]
        def Small(self, request: Any, context: Any) -> Any:
            return bench_pb2.SmallReply(values=small_result(request.a, request.b))

        def MakeBytes(self, request: Any, context: Any) -> Any:
            return bench_pb2.BytesReply(data=payload(request.size))

    options = [("grpc.max_send_message_length", _MAX_MESSAGE), ("grpc.max_receive_message_length", _MAX_MESSAGE)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
    bench_pb2_grpc.add_BenchServicer_to_server(GrpcBench(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        link.send(f"127.0.0.1:{port}")
        link.recv()
    finally:
        server.stop(None)


SERVERS: dict[str, Callable[[Connection, str], None]] = {
    "Pyro5 (msgpack)": pyro_server,
    "zerorpc": zerorpc_server,
    "gRPC": grpc_server,
}


# --- clients -------------------------------------------------------------------------------------


def _proxy(peer: str, address: str, stubs: str) -> tuple[Callable[[], object], Callable[[int], object]]:
    """The small call and the bytes fetch of ``peer``'s client, connected to ``address``."""
    if peer == "Pyro5 (msgpack)":
        import Pyro5.api

        Pyro5.api.config.SERIALIZER = "msgpack"
        pyro = Pyro5.api.Proxy(address)
        pyro._pyroBind()
        return (lambda: pyro.small(3, 0.5)), pyro.make_bytes
    if peer == "zerorpc":
        import zerorpc

        client = zerorpc.Client(timeout=120, heartbeat=None)
        client.connect(address)
        return (lambda: client.small(3, 0.5)), client.make_bytes
    import grpc

    sys.path.insert(0, stubs)
    import bench_pb2
    import bench_pb2_grpc

    options = [("grpc.max_send_message_length", _MAX_MESSAGE), ("grpc.max_receive_message_length", _MAX_MESSAGE)]
    stub = bench_pb2_grpc.BenchStub(grpc.insecure_channel(address, options=options))
    return (
        lambda: dict(stub.Small(bench_pb2.SmallRequest(a=3, b=0.5)).values),
        lambda size: stub.MakeBytes(bench_pb2.BytesRequest(size=size)).data,
    )


def peer_small(link: Connection, peer: str, address: str, stubs: str, calls: int) -> None:
    small, _fetch = _proxy(peer, address, stubs)
    answer(link, latency(small, calls))


def peer_bytes(link: Connection, peer: str, address: str, stubs: str, sizes: list[int], volume: int) -> None:
    _small, fetch = _proxy(peer, address, stubs)
    answer(link, throughput(fetch, sizes, volume))
