"""Where the per-file and per-plan work runs: in this process, in worker processes or
on a Dask cluster (``Workers``); results come back in input order."""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")

EXECUTORS = ("local", "dask")


class ExecutorError(Exception):
    """The executor cannot run (Dask not installed, scheduler unreachable)."""


class WorkerDied(ExecutorError):
    """A worker process ended abruptly (killed, out of memory, a crash in a library):
    the scan cannot account for the files it held."""


@dataclass(frozen=True)
class Ready:
    """An item of ``Workers.map`` whose result is already known: it is not sent to a
    worker, and ``value`` comes out in its place."""

    value: Any


class _Batch:
    __slots__ = ("items", "future", "results")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.future: Any = None
        self.results: list[Any] | None = None


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Workers:
    """Worker processes (or a Dask client), started on first use and kept for the
    whole scan; ``map`` runs ``fn(batch, *args)`` over batches of items and yields
    each item's result in input order. ``fn`` must be a module-level function that
    returns one result per item (it is pickled to the workers).

    Work is sent in batches (a few files each, so that inter-process traffic stays small
    next to the work) and only a bounded number of batches is in flight at a time, so
    memory does not grow with the number of files: the caller consumes results as they
    come. Items whose result is already known (``Ready``, e.g. from the scan cache) are
    not sent: they take their place in the output stream as soon as everything before
    them is out, so the stream never waits for work it does not need. Worker processes
    ignore Ctrl-C; the scanning process handles it, cancels what has not started and
    stops.
    """

    def __init__(
        self,
        jobs: int = 1,
        executor: str = "local",
        scheduler: str | None = None,
        batch_size: int = 8,
        max_waiting: int = 4096,
    ) -> None:
        if executor not in EXECUTORS:
            raise ExecutorError(f"unknown executor {executor!r}: use one of {EXECUTORS}")
        self.jobs = max(1, jobs)
        self.executor = executor
        self.scheduler = scheduler
        self.batch_size = batch_size
        self.max_waiting = max_waiting
        self._pool: Any = None
        self._client: Any = None

    def map(self, fn: Callable[..., list[R]], items: Iterable[Any], *args: Any) -> Iterator[R]:
        """``fn(batch, *args)`` over the items not ``Ready``, in batches; yields each
        item's result (a ``Ready`` item's value) in input order. At most ``4 x jobs``
        batches are in flight and at most ``max_waiting`` items wait for their turn
        to come out."""
        submit = self._submitter(fn, args)
        depth = self._depth()
        # Ready, or (batch, index in it), in input order
        order: deque[Ready | tuple[_Batch, int]] = deque()
        batch = _Batch()
        in_flight = 0

        def out(block: bool) -> Iterator[R]:
            """Pop what can come out from the front; ``block``: wait for one batch."""
            nonlocal in_flight
            while order:
                head = order[0]
                if isinstance(head, Ready):
                    order.popleft()
                    yield head.value
                    continue
                b, i = head
                if b.results is None:
                    if b.future is None or not (block or b.future.done()):
                        return
                    b.results = b.future.result()
                    b.future = None
                    in_flight -= 1
                    block = False
                order.popleft()
                yield b.results[i]

        from concurrent.futures.process import BrokenProcessPool  # here: a rescan needs none

        try:
            for item in items:
                if isinstance(item, Ready):
                    order.append(item)
                else:
                    order.append((batch, len(batch.items)))
                    batch.items.append(item)
                    if len(batch.items) >= self.batch_size:
                        batch.future = submit(batch.items)
                        in_flight += 1
                        batch = _Batch()
                head = order[0]
                if (
                    len(order) > self.max_waiting
                    and not isinstance(head, Ready)
                    and head[0] is batch
                ):
                    batch.future = submit(batch.items)  # everything waits for it: send it
                    in_flight += 1
                    batch = _Batch()
                yield from out(block=in_flight >= depth or len(order) > self.max_waiting)
            if batch.items:
                batch.future = submit(batch.items)
                in_flight += 1
            while order:
                yield from out(block=True)
        except BrokenProcessPool as exc:
            self.close(interrupted=True)
            raise WorkerDied(
                "a worker process ended abruptly (killed, or out of memory?) while reading"
                " or coding files; run again with --jobs 1 to see which file"
                f" ({exc})"
            ) from None
        except BaseException:  # Ctrl-C, or the consumer stopped: drop what has not run
            for head in order:
                if not isinstance(head, Ready) and head[0].future is not None:
                    head[0].future.cancel()
            raise

    def _depth(self) -> int:
        if self._client is not None:
            return 4 * max(self.jobs, sum(self._client.nthreads().values()) or 1)
        return 4 * self.jobs

    def _submitter(
        self, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> Callable[[list[Any]], Any]:
        if self.executor == "dask":
            client = self._dask_client()
            return lambda batch: client.submit(fn, batch, *args, pure=False)
        if self._pool is None:
            # here: multiprocessing is loaded only when workers start (a rescan needs none)
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.jobs, initializer=_ignore_sigint)
        pool = self._pool
        return lambda batch: pool.submit(fn, batch, *args)

    def _dask_client(self) -> Any:
        if self._client is not None:
            return self._client
        try:  # here: Dask is the optional rtcode[dask] extra
            from distributed import Client
        except ImportError:
            raise ExecutorError(
                "--executor dask needs Dask distributed: pip install 'rtcode[dask]'"
            ) from None
        if not self.scheduler:
            raise ExecutorError("--executor dask needs --scheduler ADDRESS (tcp://host:8786)")
        try:
            self._client = Client(  # type: ignore[no-untyped-call]  # distributed is untyped
                self.scheduler, timeout="10s", set_as_default=False
            )
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {self.scheduler}: {exc}"
            ) from None
        return self._client

    def close(self, interrupted: bool = False) -> None:
        """Stop the workers: wait for them, or after Ctrl-C cancel what has not started."""
        if self._pool is not None:
            self._pool.shutdown(wait=not interrupted, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None
