"""The HTTP server's connections, as uvicorn's HTTP/1.1 protocol keeps them, with two bounds it lacks.

Uvicorn caps the connections it holds at once (`limit_concurrency`) and closes an idle one after a response,
but it waits without end for a connection's first request, and for a request head sent a byte at a time: two
hundred sockets that never finish a request, from one address and with no account, took every place and the
service answered 503 to everybody else. Here a connection must send each whole request head within
`REQUEST_HEAD_S` of opening or of its last response, and one client address holds at most `per_address`
connections at once (a reverse proxy in front, whose connections all come from its own address, sets it as
high as the proxy's own limits).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

REQUEST_HEAD_S = 10.0
"""How long a connection may take to send a whole request head."""


class GuardedH11Protocol(H11Protocol):
    per_address = 50
    """Connections one client address holds at most; the next one is closed as soon as it opens."""

    _head_due: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None and sum(1 for c in self.connections if _address_of(c) == address) > self.per_address:
            transport.close()
            return
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_due is not None:
            self._head_due.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_due is not None:
            self._head_due.cancel()
        self._head_due = self.loop.call_later(REQUEST_HEAD_S, self._head_overdue)

    def _head_overdue(self) -> None:
        """Close the connection if it has not sent a whole request head since it opened or was last answered."""
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def _address_of(connection: Any) -> str | None:
    client = getattr(connection, "client", None)
    return client[0] if client else None


def guarded(per_address: int) -> type[GuardedH11Protocol]:
    """The protocol with its bound per client address."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"per_address": per_address})
