"""A server's signal: what server code emits, from any thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, ParamSpec

P = ParamSpec("P")


class ServerSignal(Generic[P]):
    """A signal of a server: ``emit(*args, **kwargs)`` from any thread reaches every subscriber once."""

    def __init__(self, name: str, emit: Callable[[str, tuple[Any, ...], dict[str, Any]], None]) -> None:
        self.name = name
        self._emit = emit

    def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Validate the arguments (IDL order, or by keyword) and publish them."""
        self._emit(self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<ServerSignal {self.name}>"
