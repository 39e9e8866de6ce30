"""An asyncio micro-batcher: questions from concurrent requests share one model forward, run off the event loop.

A batch leaves when it holds ``max_batch`` items or when its oldest item has waited ``max_wait_ms``. Items that queued
up while a forward was running have already waited, so they leave at once. Batches are filled round-robin over the
requests waiting (one item from each in turn), so a request of many questions does not hold back one that arrives after
it: the newcomer joins the next batch beside the big request's remaining items. Forwards run one at a time on a
dedicated thread (the model is not re-entrant, and the event loop keeps accepting and validating requests meanwhile).
When a batch of several fails, each item is retried alone, so one pathological question cannot fail the other requests
that happened to share its batch. Anything else that goes wrong with a batch (an ``on_batch`` error, a bug) settles its
callers' futures with the error and the loop carries on: a request never hangs, and later requests are still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Collects items from concurrent callers into batches for ``forward`` (a blocking, list-in list-out call)."""

    def __init__(
        self,
        forward: Callable[[list[T]], list[R]],
        max_batch: int,
        max_wait_ms: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.forward = forward
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch
        self._groups: deque[_Group] = deque()  # one per waiting submit call, in round-robin order
        self._waiting = 0
        self._arrived: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audiomcq-forward")

    def _start(self) -> None:
        """Create the events and the batching task in the running loop (the server's, not the constructor's)."""
        if self._task is None or self._task.done():
            self._arrived, self._full = asyncio.Event(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="audiomcq-batcher")

    async def submit(self, items: Sequence[T]) -> list[R]:
        """The results for ``items``, in order, each computed in whichever batch it joined."""
        self._start()
        assert self._arrived is not None and self._full is not None
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        if not futures:
            return []
        self._groups.append(_Group(time.monotonic(), deque(zip(items, futures, strict=True))))
        self._waiting += len(futures)
        self._arrived.set()
        if self._waiting >= self.max_batch:
            self._full.set()
        return list(await asyncio.gather(*futures))

    def _take(self) -> list[tuple[T, asyncio.Future]]:
        """Up to ``max_batch`` items, one from each waiting request in turn (a request with items left goes to the
        back of the line); items whose caller went away are dropped, they need nothing."""
        batch: list[tuple[T, asyncio.Future]] = []
        while self._groups and len(batch) < self.max_batch:
            group = self._groups.popleft()
            item, fut = group.items.popleft()
            self._waiting -= 1
            if not fut.done():
                batch.append((item, fut))
            if group.items:
                self._groups.append(group)
        return batch

    async def _run(self) -> None:
        assert self._arrived is not None and self._full is not None
        while True:
            while not self._groups:
                self._arrived.clear()
                await self._arrived.wait()
            wait = min(g.arrived for g in self._groups) + self.max_wait - time.monotonic()
            if self._waiting < self.max_batch and wait > 0:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), wait)
            live = self._take()
            if not live:
                continue
            try:
                await self._dispatch(live)
            except Exception as err:  # the callers get the error; the loop must keep serving
                log.exception("a batch of %d failed outside its forward", len(live))
                for _, fut in live:
                    _settle(fut, error=err)

    async def _dispatch(self, live: list[tuple[T, asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        if self.on_batch is not None:
            self.on_batch(len(live))
        try:
            results = await loop.run_in_executor(self._executor, self.forward, [item for item, _ in live])
            if len(results) != len(live):
                raise RuntimeError(f"forward returned {len(results)} results for {len(live)} items")
        except Exception as err:
            if len(live) == 1:
                log.exception("forward failed for one item")
                _settle(live[0][1], error=err)
                return
            log.warning("a batch of %d failed (%s); retrying its items one by one", len(live), err)
            for pair in live:
                await self._dispatch([pair])
            return
        for (_, fut), result in zip(live, results, strict=True):
            _settle(fut, result=result)


class _Group:
    """The items of one ``submit`` call still waiting for a batch, and when they arrived."""

    __slots__ = ("arrived", "items")

    def __init__(self, arrived: float, items: deque) -> None:
        self.arrived = arrived
        self.items = items


def _settle(fut: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)
