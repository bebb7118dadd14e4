"""The one place that owns storage threading: every blocking Azure Storage SDK call runs here.

The storage stores use the SDKs' synchronous clients, run in worker threads, rather than their async clients:
measured under four concurrent runs (``python -m devtools.storage_calls``) the two cost the same wall time,
CPU and memory, and the synchronous clients are what every store already uses, without a second HTTP stack
(aiohttp) beside httpx. What matters is *which* threads: ``asyncio.to_thread`` shares the loop's default
executor (``min(32, cores + 4)`` threads, six on a two-core worker) with everything else that blocks, such as
credential token requests. Here bulk calls (blocks, downloads, rows) get a pool of their own, and lease
calls a small separate one, so a lease renewal never waits behind a queue of block uploads.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

BULK_THREADS = 16
LEASE_THREADS = 4

_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}


def _pool(name: str, size: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"storage-{name}")
        return pool


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking storage call (blob blocks, downloads, table rows, queue messages)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool("bulk", BULK_THREADS), functools.partial(fn, *args, **kwargs))


async def lease_call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking lease call (acquire, renew, release) on threads bulk calls never occupy."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool("lease", LEASE_THREADS), functools.partial(fn, *args, **kwargs))
