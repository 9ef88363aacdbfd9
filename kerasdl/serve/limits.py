"""Bounds on every request: body bytes and read time, header read time, and admission under load.

Past `max_concurrent` requests being worked on and `max_queue` waiting, a request is answered
503 at once (TF Serving answers UNAVAILABLE when its batching queue is full): under overload
the server sheds load in microseconds instead of letting timeouts pile up, and recovers as
soon as the load drops.
"""

from __future__ import annotations

import asyncio
import contextlib

from kerasdl.serve.protocol import ApiError


class Admission:
    """A bounded number of requests at work and a bounded queue; beyond both, a fast 503."""

    def __init__(self, max_concurrent: int, max_queue: int):
        self.max_concurrent, self.max_queue = max_concurrent, max_queue
        self.semaphore = asyncio.Semaphore(max_concurrent)
        self.waiting = 0
        self.working = 0

    @contextlib.asynccontextmanager
    async def slot(self):
        if self.semaphore.locked() and self.waiting >= self.max_queue:
            raise ApiError(503, f"the server is at capacity ({self.max_concurrent} requests at work and "
                                f"{self.max_queue} waiting: --max-concurrent, --max-queue); retry shortly")
        self.waiting += 1
        try:
            await self.semaphore.acquire()
        finally:
            self.waiting -= 1
        self.working += 1
        try:
            yield
        finally:
            self.working -= 1
            self.semaphore.release()


async def read_body(request, limit: int, seconds: float) -> bytes:
    """The request body, or 413 as soon as it is known to be over `limit` bytes (before parsing),
    or 408 when it has not all arrived within `seconds`."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over the {limit}-byte limit (--max-body)")
    chunks, size = [], 0

    async def receive():
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body is over the {limit}-byte limit (--max-body)")
            chunks.append(chunk)

    import anyio

    try:
        with anyio.fail_after(seconds):  # a cancel scope: no task per request, unlike asyncio.wait_for
            await receive()
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {seconds:g} s (--body-timeout)") from None
    except ClientDisconnect:
        raise ApiError(499, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def deadline_protocol(header_seconds: float):
    """uvicorn's h11 protocol with a deadline on the request head: a connection that opens, or
    starts a request, and has not sent the whole head within `header_seconds` is closed (uvicorn
    itself waits forever for it). Idle keep-alive connections are closed by uvicorn's own
    --timeout-keep-alive."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DeadlineH11Protocol(H11Protocol):
        head_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self.head_timer = self.loop.call_later(header_seconds, self.head_expired)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            waiting_for_head = self.conn.their_state is h11.IDLE
            if not waiting_for_head and self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None
            elif waiting_for_head and self.head_timer is None:  # a new request began on a kept-alive connection
                self.head_timer = self.loop.call_later(header_seconds, self.head_expired)

        def head_expired(self) -> None:
            self.head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc):
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None
            super().connection_lost(exc)

    return DeadlineH11Protocol
