"""Processes and numbers: pinned, stoppable server and client processes, and the statistics of repetitions.

Every server and client runs in a process of its own, started with the ``spawn``
method. The parent pins itself to the target CPU and sets the environment just
around ``Process.start()``, so the child and every thread it will ever make (ZeroMQ's
I/O thread, zidl's workers, BLAS's pool) inherit the same CPU and environment from
the first instruction. Every process started is tracked and stopped when its
``with`` block ends, on errors and on Ctrl-C too.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import signal
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

SERVER_CPU = 1
CLIENT_CPU = 0
GLIBC_NO_MMAP = {"MALLOC_MMAP_MAX_": "0"}
"""The opt-in: glibc never serves an allocation with a fresh mmap, so big buffers reuse the heap's warm pages."""

_STARTUP_TIMEOUT = 60.0
_spawn = multiprocessing.get_context("spawn")


def pinning() -> str:
    """How processes are placed, for the output and the README."""
    if os.cpu_count() == 1:
        return "one CPU: client and server share it"
    return f"server processes on CPU {SERVER_CPU}, client processes on CPU {CLIENT_CPU} (os.sched_setaffinity)"


@contextlib.contextmanager
def _inherited(cpu: int, env: dict[str, str]) -> Iterator[None]:
    """Pin this thread to ``cpu`` and set ``env`` for the duration, so that a child started now inherits both."""
    saved_cpus = os.sched_getaffinity(0)
    saved_env = {name: os.environ.get(name) for name in env}
    available = saved_cpus if len(saved_cpus) > 1 else {cpu}
    os.sched_setaffinity(0, {cpu} if cpu in available else available)
    os.environ.update(env)
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved_cpus)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


class BenchmarkFailed(Exception):
    """A child process's benchmark raised; the message names the exception."""


@dataclass(frozen=True)
class _Failure:
    message: str


def _child(link: Connection, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A child process's entry: run ``target(link, *args)``; SIGTERM and Ctrl-C end it quietly, a failure is sent."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with contextlib.suppress(KeyboardInterrupt, SystemExit, BrokenPipeError, EOFError):
        try:
            target(link, *args)
        except Exception as exc:
            link.send(_Failure(f"{target.__name__}: {type(exc).__name__}: {exc}"))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # stopped while tearing down: nothing left to clean up


def goes(link: Connection) -> Iterator[None]:
    """In a client: say it is ready, then come round once per "go" from the parent, until it says "done"."""
    link.send("ready")
    while link.recv() == "go":
        yield


class Child:
    """A pinned process running ``target(link, *args)``; the parent talks to it over ``link``."""

    def __init__(self, target: Callable[..., Any], args: tuple[Any, ...], cpu: int, env: dict[str, str]) -> None:
        self.link, child_link = _spawn.Pipe()
        self.process: BaseProcess = _spawn.Process(target=_child, args=(child_link, target, args), daemon=True)
        with _inherited(cpu, env):
            self.process.start()
        child_link.close()

    def receive(self, timeout: float = _STARTUP_TIMEOUT) -> Any:
        if not self.link.poll(timeout):
            raise BenchmarkFailed(f"{self.process.name} did not answer within {timeout} s")
        answer = self.link.recv()
        if isinstance(answer, _Failure):
            raise BenchmarkFailed(answer.message)
        return answer

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.link.close()


@contextlib.contextmanager
def children(
    target: Callable[..., Any], args: tuple[Any, ...], *, count: int = 1, cpu: int, env: dict[str, str] | None = None
) -> Iterator[list[Child]]:
    """``count`` processes running ``target``, all stopped when the block ends."""
    started: list[Child] = []
    try:
        for _ in range(count):
            started.append(Child(target, args, cpu, env or {}))
        yield started
    finally:
        for child in started:
            child.stop()


@contextlib.contextmanager
def server(target: Callable[..., Any], *args: Any, env: dict[str, str] | None = None) -> Iterator[Any]:
    """A server process on the server CPU; yields what it sends once it is listening (its address)."""
    with children(target, args, cpu=SERVER_CPU, env=env) as (child,):
        yield child.receive()


@dataclass(frozen=True)
class Clients:
    """``count`` client processes running ``target(link, *args)`` (see ``goes``), measuring together."""

    target: Callable[..., Any]
    args: tuple[Any, ...]
    count: int = 1


def measure(groups: list[Clients], reps: int, env: dict[str, str] | None = None) -> list[list[Any]]:
    """Start every group's processes on the client CPU; once all are ready, ``reps`` times let each group in turn
    measure one repetition, its processes at once. Per group, the figures of each repetition (a list of one per
    process when ``count`` > 1).

    Taking turns puts a zidl repetition and its baseline's side by side in time, so that
    the machine's drift between them (this VM's varies a call by 20 % from one second to
    the next) does not become the ratio.
    """
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(children(group.target, group.args, count=group.count, cpu=CLIENT_CPU, env=env))
            for group in groups
        ]
        for child in itertools.chain.from_iterable(started):
            if child.receive() != "ready":
                raise BenchmarkFailed(f"{child.process.name} did not get ready")
        out: list[list[Any]] = [[] for _ in groups]
        turns = list(zip(groups, started, out, strict=True))
        for rep in range(reps):
            for group, processes, figures in turns if rep % 2 == 0 else reversed(turns):  # neither always first
                for child in processes:
                    child.link.send("go")
                answers = [child.receive(timeout=600.0) for child in processes]
                figures.append(answers if group.count > 1 else answers[0])
        for child in itertools.chain.from_iterable(started):
            child.link.send("done")
        for child in itertools.chain.from_iterable(started):
            child.process.join(10.0)  # a client ends by itself once told; let it close its sockets
        return out


@dataclass(frozen=True)
class Figure:
    """The median of several repetitions and their spread (lowest and highest)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Figure:
        return cls(statistics.median(values), min(values), max(values))

    @property
    def spread(self) -> float:
        """(highest - lowest) / median, as a fraction."""
        return (self.high - self.low) / self.median if self.median else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "low": self.low, "high": self.high, "spread": round(self.spread, 4)}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
