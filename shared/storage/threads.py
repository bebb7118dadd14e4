"""The one place that owns storage threading: every blocking Azure Storage SDK call runs here.

The storage stores use the SDKs' synchronous clients, run in worker threads, rather than their async clients:
measured under four concurrent runs (``python -m devtools.storage_calls``) the two cost the same wall time,
CPU and memory, and the synchronous clients are what every store already uses, without a second HTTP stack
(aiohttp) beside httpx. What matters is *which* threads: ``asyncio.to_thread`` shares the loop's default
executor (``min(32, cores + 4)`` threads, six on a two-core worker) with everything else that blocks, such as
credential token requests. Here bulk calls (blocks, downloads, rows) get a pool of their own, and lease
calls a small separate one, so a lease renewal never waits behind a queue of block uploads.

Threads cost memory beyond their stacks: glibc's allocator gives each thread that allocates an arena of its
own (up to eight per core), and memory freed in an arena stays with it. The storage threads handle 4 MB
blocks, so each arena grows to hold a few, and the process keeps them all: on the benchmark's 100,000-user
run, 24 MB more peak memory than with two arenas, for no measurable difference in time. Before the first
pool starts, the process is limited to :data:`MALLOC_ARENAS` arenas (``mallopt(M_ARENA_MAX)``, the
documented knob behind the ``MALLOC_ARENA_MAX`` environment variable, which still wins when set).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

BULK_THREADS = 16
LEASE_THREADS = 4
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's malloc.h

_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}


def limit_malloc_arenas() -> bool:
    """Limit glibc's malloc arenas (Linux with glibc; elsewhere, or when ``MALLOC_ARENA_MAX`` is set, nothing
    changes). Returns whether the limit was set."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def _pool(name: str, size: int) -> ThreadPoolExecutor:
    with _lock:
        pool = _pools.get(name)
        if pool is None:
            if not _pools:
                limit_malloc_arenas()
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
