"""Where the per-file work runs: in this process, in worker processes, or on a Dask
cluster. The same function runs everywhere; results come back in input order.

Work is sent in batches (a few files each, so that inter-process traffic stays small
next to the work) and only a bounded number of batches is in flight at a time, so
memory does not grow with the number of files: the caller consumes results as they
come. Worker processes ignore Ctrl-C; the scanning process handles it, cancels what
has not started and stops.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "dask")


class ExecutorError(Exception):
    """The executor cannot run (Dask not installed, scheduler unreachable)."""


class WorkerDied(ExecutorError):
    """A worker process ended abruptly (killed, out of memory, a crash in a library):
    the scan cannot account for the files it held."""


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Workers:
    """Worker processes (or a Dask client), started on first use and kept for the
    whole scan; ``map`` runs ``fn(batch, *args)`` over batches of items and yields
    each item's result in input order. ``fn`` must be a module-level function that
    returns one result per item (it is pickled to the workers)."""

    def __init__(
        self,
        jobs: int = 1,
        executor: str = "local",
        scheduler: str | None = None,
        batch_size: int = 8,
    ) -> None:
        if executor not in EXECUTORS:
            raise ExecutorError(f"unknown executor {executor!r}: use one of {EXECUTORS}")
        self.jobs = max(1, jobs)
        self.executor = executor
        self.scheduler = scheduler
        self.batch_size = batch_size
        self._pool: Any = None
        self._client: Any = None

    def map(self, fn: Callable[..., list[R]], items: Iterable[T], *args: Any) -> Iterator[R]:
        submit = self._submitter(fn, args)
        depth = self._depth()
        pending: deque = deque()
        try:
            for batch in batched(items, self.batch_size):
                pending.append(submit(batch))
                if len(pending) >= depth:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BrokenProcessPool as exc:
            self.close(interrupted=True)
            raise WorkerDied(
                "a worker process ended abruptly (killed, or out of memory?) while reading"
                " or coding files; run again with --jobs 1 to see which file"
                f" ({exc})"
            ) from None
        except BaseException:  # Ctrl-C, or the consumer stopped: drop what has not run
            for future in pending:
                future.cancel()
            raise

    def _depth(self) -> int:
        if self._client is not None:
            return 4 * max(self.jobs, sum(self._client.nthreads().values()) or 1)
        return 4 * self.jobs

    def _submitter(self, fn, args):
        if self.executor == "dask":
            client = self._dask_client()
            return lambda batch: client.submit(fn, batch, *args, pure=False)
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.jobs, initializer=_ignore_sigint)
        pool = self._pool
        return lambda batch: pool.submit(fn, batch, *args)

    def _dask_client(self):
        if self._client is not None:
            return self._client
        try:
            from distributed import Client
        except ImportError:
            raise ExecutorError(
                "--executor dask needs Dask distributed: pip install 'rtcode[dask]'"
            ) from None
        if not self.scheduler:
            raise ExecutorError("--executor dask needs --scheduler ADDRESS (tcp://host:8786)")
        try:
            self._client = Client(self.scheduler, timeout="10s", set_as_default=False)
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
