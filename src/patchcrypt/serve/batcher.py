"""Request batching: one worker thread runs the model; concurrent requests share its calls.

While the worker runs a batch, new requests queue, and the next batch takes everything queued (up to
``max_batch`` images, optionally waiting ``window_s`` for more). That adds no latency for a lone client and
fills batches under load.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np

__all__ = ["Batcher"]


class Batcher:
    """Merges concurrent requests into model calls on one worker thread."""

    def __init__(self, model, device, max_batch: int, window_s: float):
        self.model, self.device = model.to(device).eval(), device
        self.max_batch, self.window_s = max(1, int(max_batch)), max(0.0, window_s)
        self.queue: "asyncio.Queue" = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="patchcrypt-model")
        self.batches = self.images = 0
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False)

    async def submit(self, images: np.ndarray) -> np.ndarray:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((images, fut))
        return await fut

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        from ..inference import predict_proba

        return predict_proba(self.model, batch, self.device)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            n = len(items[0][0])
            deadline = loop.time() + self.window_s
            while n < self.max_batch:
                try:
                    wait = deadline - loop.time()
                    item = self.queue.get_nowait() if wait <= 0 else await asyncio.wait_for(self.queue.get(), wait)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                items.append(item)
                n += len(item[0])
            try:
                probs = await loop.run_in_executor(self.executor, self._forward,
                                                   np.concatenate([imgs for imgs, _ in items]))
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.images += n
            start = 0
            for imgs, fut in items:
                if not fut.done():
                    fut.set_result(probs[start:start + len(imgs)])
                start += len(imgs)
