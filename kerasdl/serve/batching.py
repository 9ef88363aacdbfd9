"""Batching: concurrent requests to one signature run as one model call, at warmed-up batch sizes."""

from __future__ import annotations

import asyncio

import numpy as np

from kerasdl.serve.protocol import _input_specs, run_signature


BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


def _pad(x: np.ndarray) -> np.ndarray:
    """`x` with zero rows added up to the next size in BATCH_SIZES (larger batches are left as they are)."""
    target = next((b for b in BATCH_SIZES if b >= len(x)), len(x))
    return x if target == len(x) else np.concatenate([x, np.zeros((target - len(x), *x.shape[1:]), x.dtype)])


def warm_up(servable: Servable) -> None:
    """One call of every signature at every batch size the batcher uses."""
    for fn in servable.signatures.values():
        specs = _input_specs(fn)
        if any(None in spec.shape.as_list()[1:] for spec in specs.values()):
            continue
        for size in BATCH_SIZES:
            run_signature(fn, {k: np.zeros((size, *spec.shape.as_list()[1:]), spec.dtype.as_numpy_dtype)
                               for k, spec in specs.items()})


class Batcher:
    """Runs concurrent requests to the same signature as one model call, as TF Serving's batching does.

    No timer: while one call runs (in a worker thread), the requests that arrive queue up,
    and the next call takes all of them (up to `max_batch` instances). A lone request is run
    at once; under load the calls grow and their count per second falls. Batches are padded
    to the next of BATCH_SIZES (TF Serving's `allowed_batch_sizes`), sizes `warm_up` has run
    once already: a batch shape seen for the first time costs oneDNN a slow first call.
    """

    def __init__(self, max_batch: int = BATCH_SIZES[-1]):
        self.max_batch = max_batch
        self.queues: dict = {}

    async def run(self, fn, tensors: dict) -> dict:
        queue = self.queues.get(id(fn))
        if queue is None:
            queue = self.queues[id(fn)] = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._work(fn, queue))
        future = asyncio.get_running_loop().create_future()
        await queue.put((tensors, future))
        return await future

    async def _work(self, fn, queue: asyncio.Queue) -> None:
        from starlette.concurrency import run_in_threadpool

        while True:
            batch = [await queue.get()]
            size = len(next(iter(batch[0][0].values())))
            while size < self.max_batch and not queue.empty():
                item = queue.get_nowait()
                batch.append(item)
                size += len(next(iter(item[0].values())))
            keys = list(batch[0][0])
            joined = {k: _pad(np.concatenate([t[k] for t, _ in batch])) for k in keys}
            try:
                outputs = await run_in_threadpool(run_signature, fn, joined)
            except Exception as exc:  # one bad call fails its requests, never the worker
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for tensors, future in batch:
                n = len(next(iter(tensors.values())))
                if not future.done():
                    future.set_result({k: v[start: start + n] for k, v in outputs.items()})
                start += n


