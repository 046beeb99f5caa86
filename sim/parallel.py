"""Where candidate evaluations run: a local process pool, or a Dask cluster.

The tuner hands an executor one picklable *context* (the loaded scenario and
the judging rules, shipped once per worker, not once per task) and a list of
picklable tasks; the executor yields `(index, result)` as tasks finish, in
whatever order they finish. The caller puts results back in task order, so
what comes out never depends on the executor, the number of workers or the
scheduling: that is the whole determinism argument, and why no executor may
carry state from one task to the next beyond the read-only context.

`--executor dask://HOST:PORT` needs `dask[distributed]` on this machine and
capsim (same version) on the workers, and the workers must see the
scenario's replay files at the same paths (a shared checkout or volume).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from sim.errors import ExternalError, InputError

TaskFn = Callable[[Any, Any], Any]

# The worker process's copy of the context, filled by the pool's initializer (a dict, not a global rebind).
_worker: dict[str, Any] = {}


class Executor(Protocol):
    """Runs `fn(context, task)` for each task; yields (task index, result) as they complete."""

    workers: int

    def run(self, fn: TaskFn, context: Any, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


class InlineExecutor:
    """Runs tasks in this process, one after the other (one worker, and the reference for the others)."""

    workers = 1

    def run(self, fn: TaskFn, context: Any, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        for i, task in enumerate(tasks):
            yield i, fn(context, task)

    def close(self) -> None:
        return None

    def describe(self) -> str:
        return "inline (1 worker)"


def _init_worker(blob: bytes) -> None:
    _worker["context"] = pickle.loads(blob)


def _call(fn: TaskFn, task: Any) -> Any:
    return fn(_worker["context"], task)


class LocalExecutor:
    """A process pool on this machine; the context goes to each worker once, at start-up.

    Workers are spawned, not forked: the parent may hold threads (a progress
    bar, Dask's event loop) that a fork would copy mid-flight.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._context_id: int | None = None

    def _ensure_pool(self, context: Any) -> ProcessPoolExecutor:
        if self._pool is not None and self._context_id == id(context):
            return self._pool
        self.close()
        blob = pickle.dumps(context)
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(blob,),
        )
        self._context_id = id(context)
        return self._pool

    def run(self, fn: TaskFn, context: Any, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        pool = self._ensure_pool(context)
        pending: dict[Future[Any], int] = {pool.submit(_call, fn, t): i for i, t in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: pending[f]):
                yield pending.pop(fut), fut.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._context_id = None

    def describe(self) -> str:
        return f"local process pool ({self.workers} workers)"


class DaskExecutor:
    """Tasks on a Dask cluster; the context is scattered to every worker once."""

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError as exc:
            raise InputError(
                "--executor dask://... needs dask.distributed",
                field="--executor",
                valid="pip install 'dask[distributed]', or --executor local",
            ) from exc
        self.address = address
        try:
            self._client = Client(address, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ExternalError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
        self.workers = max(
            1, sum(w.get("nthreads", 1) for w in self._client.scheduler_info()["workers"].values())
        )
        self._scattered: tuple[int, Any] | None = None

    def run(self, fn: TaskFn, context: Any, tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        if self._scattered is None or self._scattered[0] != id(context):
            self._scattered = (id(context), self._client.scatter(context, broadcast=True))
        ctx_future = self._scattered[1]
        futures = {self._client.submit(fn, ctx_future, t, pure=False): i for i, t in enumerate(tasks)}
        try:
            for fut in as_completed(list(futures), loop=self._client.loop):
                yield futures[fut], fut.result()
        except (OSError, TimeoutError) as exc:
            raise ExternalError(f"the Dask cluster at {self.address} failed: {exc}") from exc

    def close(self) -> None:
        self._client.close()

    def describe(self) -> str:
        return f"Dask cluster {self.address} ({self.workers} threads)"


def make_executor(spec: str, workers: int | None = None) -> Executor:
    """`local` (a process pool of `workers`, default every core) or `dask://HOST:PORT`."""
    if spec.startswith("dask://") or spec.startswith("tcp://"):
        return DaskExecutor("tcp://" + spec.split("://", 1)[1])
    if spec != "local":
        raise InputError(f"unknown executor {spec!r}", field="--executor", valid="local, or dask://HOST:PORT")
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise InputError(f"--workers must be at least 1, got {n}", field="--workers")
    return InlineExecutor() if n == 1 else LocalExecutor(n)
