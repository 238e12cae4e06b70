"""What the tests share besides fixtures: a reader of event streams, and a token's parts."""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Dict, Iterator

#: How long any one wait may last.
PATIENCE = 20.0


class Stream:
    """An event stream read line by line, as `EventSource` reads it."""

    def __init__(self, url: str) -> None:
        self.answer = urllib.request.urlopen(url, timeout=PATIENCE)

    def next(self) -> Dict[str, str]:
        """The next event's fields; `data` joined as `EventSource` joins it."""
        event: Dict[str, str] = {}
        for line in self.lines():
            if not line:
                if "data" in event:
                    return event
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            if field == "data" and field in event:
                value = event[field] + "\n" + value
            event[field] = value
        raise AssertionError("the stream ended")

    def lines(self) -> Iterator[str]:
        while True:
            line = self.answer.readline()
            if not line:
                return
            yield line.decode().rstrip("\n")


def open_stream(url: str) -> Stream:
    """An open stream, read past its start, so it is live."""
    stream = Stream(url)
    assert stream.next()["event"] == "stream-start"
    return stream


def token_part(token: str, index: int) -> dict:
    """A token's header (0) or claims (1), unverified."""
    encoded = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
