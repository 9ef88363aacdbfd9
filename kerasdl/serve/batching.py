"""Batching: concurrent requests to one signature run as one model call, at warmed-up batch sizes."""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from kerasdl.serve.protocol import one_line

log = logging.getLogger("kerasdl.serve")

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


def _pad(x: np.ndarray) -> np.ndarray:
    """`x` with zero rows added up to the next size in BATCH_SIZES (larger batches are left as they are)."""
    target = next((b for b in BATCH_SIZES if b >= len(x)), len(x))
    return x if target == len(x) else np.concatenate([x, np.zeros((target - len(x), *x.shape[1:]), x.dtype)])


def _rows(tensors: dict) -> int:
    return len(next(iter(tensors.values())))


class Batcher:
    """Runs concurrent requests to the same signature as one model call, as TF Serving's batching does.

    No timer: while one call runs (in a worker thread), the requests that arrive queue up,
    and the next call takes all of them (up to `max_batch` instances). A lone request is run
    at once; under load the calls grow and their count per second falls. Batches are padded
    to the next of BATCH_SIZES (TF Serving's `allowed_batch_sizes`), sizes the warm-up has run
    once already: a batch shape seen for the first time costs oneDNN a slow first call.

    A worker per signature lives while it has work and ends when its queue is empty, so an
    unloaded version's function is not kept alive. Any exception in a call fails only the
    requests of that call; the worker goes on with the next.
    """

    def __init__(self, call, max_batch: int = BATCH_SIZES[-1], on_batch=None):
        self.call = call  # async (fn, tensors) -> outputs, e.g. the model call in a worker thread
        self.max_batch = max_batch
        self.on_batch = on_batch  # called with (tag, rows) after every model call, for the metrics
        self.queues: dict = {}

    def depth(self) -> int:
        """Requests waiting for a model call, over all signatures."""
        return sum(queue.qsize() for queue, _ in self.queues.values())

    async def run(self, fn, tensors: dict, tag=None) -> dict:
        """`fn`'s outputs for `tensors`, computed in one call with the other requests waiting for `fn`;
        `tag` (e.g. the model and version) is handed to `on_batch`."""
        entry = self.queues.get(id(fn))
        if entry is None:
            queue: asyncio.Queue = asyncio.Queue()
            task = asyncio.get_running_loop().create_task(self._work(fn, queue, tag))
            entry = self.queues[id(fn)] = (queue, task)
        future = asyncio.get_running_loop().create_future()
        entry[0].put_nowait((tensors, future))
        return await future

    async def _work(self, fn, queue: asyncio.Queue, tag) -> None:
        try:
            while not queue.empty():
                batch = [queue.get_nowait()]
                size = _rows(batch[0][0])
                while size < self.max_batch and not queue.empty():
                    item = queue.get_nowait()
                    batch.append(item)
                    size += _rows(item[0])
                batch = [(t, f) for t, f in batch if not f.done()]  # clients that left are not computed
                if batch:
                    await self._call(fn, batch, tag)
        finally:
            del self.queues[id(fn)]

    async def _call(self, fn, batch: list, tag) -> None:
        try:
            keys = list(batch[0][0])
            joined = {k: _pad(np.concatenate([t[k] for t, _ in batch])) for k in keys}
            outputs = await self.call(fn, joined)
            if self.on_batch is not None:
                self.on_batch(tag, sum(_rows(t) for t, _ in batch))
        except Exception as exc:  # one bad call fails its requests, never the worker
            log.warning("a model call of %d requests failed: %s", len(batch), one_line(exc, 200))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for tensors, future in batch:
            n = _rows(tensors)
            if not future.done():
                future.set_result({k: v[start: start + n] for k, v in outputs.items()})
            start += n
