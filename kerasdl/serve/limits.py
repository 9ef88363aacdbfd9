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
    """uvicorn's h11 protocol with a deadline on a silent client: a connection whose client owes
    the server bytes (the request head, or the rest of a body) and sends none for `header_seconds`
    is closed. uvicorn itself waits forever for them, also after answering early (a 404 or 413
    sent before the body was read), so a few hundred such sockets would hold every connection
    slot. Idle keep-alive connections between requests are closed by uvicorn's --timeout-keep-alive."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    owes_bytes = (h11.IDLE, h11.SEND_BODY)  # the client's states in which the server waits on it

    class DeadlineH11Protocol(H11Protocol):
        silence_timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self.arm()

        def arm(self) -> None:
            self.disarm()
            self.silence_timer = self.loop.call_later(header_seconds, self.silence_expired)

        def disarm(self) -> None:
            if self.silence_timer is not None:
                self.silence_timer.cancel()
                self.silence_timer = None

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state in owes_bytes:  # every byte restarts the clock
                self.arm()
            else:  # the request is complete: the application has it
                self.disarm()

        def silence_expired(self) -> None:
            self.silence_timer = None
            if self.conn.their_state not in owes_bytes or self.transport.is_closing():
                return
            if self.conn.their_state is h11.SEND_BODY and self.conn.our_state is h11.SEND_RESPONSE:
                self.arm()  # the application is still reading this body: its --body-timeout answers 408
                return
            self.transport.close()

        def connection_lost(self, exc):
            self.disarm()
            super().connection_lost(exc)

    return DeadlineH11Protocol
