"""Publishing from asyncio code: the same requests as `Publisher`, made on the event loop's
default executor, so the loop never waits on the network and every failure is the same
`PublishError`."""

from __future__ import annotations

import asyncio
import functools
from typing import Callable, List, Optional, Sequence, TypeVar

from .publisher import Event, Publisher

T = TypeVar("T")


class AsyncPublisher:
    """`Publisher` for asyncio: `await publisher.publish(...)`. Arguments as `Publisher`'s."""

    def __init__(
        self, url: Optional[str] = None, token: Optional[str] = None, timeout: float = 10.0
    ) -> None:
        self.publisher = Publisher(url, token, timeout)

    async def publish(
        self, group: str, event: Optional[str], data: object, key: Optional[str] = None
    ) -> str:
        """Like `Publisher.publish`."""
        return await self._run(functools.partial(self.publisher.publish, group, event, data, key))

    async def publish_many(self, events: Sequence[Event]) -> List[str]:
        """Like `Publisher.publish_many`."""
        return await self._run(functools.partial(self.publisher.publish_many, list(events)))

    @staticmethod
    async def _run(call: Callable[[], T]) -> T:
        # A cancelled await leaves the request to finish on its thread: it is bounded by the
        # publisher's timeout.
        return await asyncio.get_running_loop().run_in_executor(None, call)


async def publish_async(
    group: str, event: Optional[str], data: object, key: Optional[str] = None
) -> str:
    """Like `publish`, for asyncio: configured by SSE_PUBLISH_URL and SSE_PUBLISH_TOKEN."""
    return await AsyncPublisher().publish(group, event, data, key)


async def publish_many_async(events: Sequence[Event]) -> List[str]:
    """Like `publish_many`, for asyncio."""
    return await AsyncPublisher().publish_many(events)
