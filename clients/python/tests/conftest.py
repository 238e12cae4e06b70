"""The real `sse` server the Rust test `python_client` started: its addresses and secrets come
in the environment."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import sse_publish  # noqa: E402
from support import Stream, open_stream  # noqa: E402


@dataclass
class Server:
    """The server under test: `events` is the base of `/events/{group}` (a `sse::Token`
    handler); SSE_PUBLISH_URL and SSE_PUBLISH_TOKEN name its publish endpoint."""

    events: str
    publish_url: str
    token_secret: str

    def stream(self, group: str, token: Optional[str] = None) -> Stream:
        """A live stream of `group`, with `token` or one signed for it."""
        token = token or sse_publish.subscribe_token([group], secret=self.token_secret)
        return open_stream(f"{self.events}{group}?token={token}")


@pytest.fixture
def server() -> Server:
    events = os.environ.get("SSE_TEST_EVENTS_URL")
    if not events:
        raise RuntimeError(
            "no server: these tests run from `cargo test -p sse-tests --features python "
            "--test python_client`, which starts one"
        )
    return Server(
        events=events,
        publish_url=os.environ["SSE_PUBLISH_URL"],
        token_secret=os.environ["SSE_TOKEN_SECRET"],
    )
