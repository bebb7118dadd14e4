"""Structured concurrency for the pipeline: ``asyncio.TaskGroup``, with the first failure raised as itself.

A task group cancels its other tasks when one fails and raises an ``ExceptionGroup``; callers here classify
the failure (:func:`shared.retry.classify`) and tests expect the error itself, so :func:`first_error` unwraps
the group to the first real exception (the rest were cancellations or consequences).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]


@contextlib.asynccontextmanager
async def first_error() -> AsyncIterator[None]:
    try:
        yield
    except BaseExceptionGroup as group:
        raise _first(group) from None


async def run_all(jobs: Iterable[Awaitable[Any]]) -> None:
    """Run jobs concurrently; the first failure cancels the rest and is raised."""
    async with first_error(), asyncio.TaskGroup() as group:
        for job in jobs:
            group.create_task(_await(job))


async def _await(job: Awaitable[Any]) -> Any:
    return await job
