"""Publishing over HTTP to an `sse::PublishEndpoint`, with the standard library's urllib."""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

URL_ENV = "SSE_PUBLISH_URL"
TOKEN_ENV = "SSE_PUBLISH_TOKEN"

#: One event of a batch: (group, event, data) or (group, event, data, key).
Event = Union[Tuple[str, Optional[str], Any], Tuple[str, Optional[str], Any, Optional[str]]]


class PublishError(Exception):
    """The events were not published: the server refused them (its message is this error's),
    or could not be reached, or did not answer in time (the cause is chained).

    `status` is the HTTP status (None when there was no answer); `index` the event of a batch
    that was refused (None when the whole request was)."""

    def __init__(
        self, message: str, status: Optional[int] = None, index: Optional[int] = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.index = index


class Publisher:
    """Publishes to the endpoint at `url` with `token`; either defaults to its environment
    variable (SSE_PUBLISH_URL, SSE_PUBLISH_TOKEN). `timeout` bounds each wait for the server,
    in seconds: connecting, and each read of its answer."""

    def __init__(
        self, url: Optional[str] = None, token: Optional[str] = None, timeout: float = 10.0
    ) -> None:
        url = url or os.environ.get(URL_ENV)
        token = token or os.environ.get(TOKEN_ENV)
        if not url:
            raise PublishError(f"no publish endpoint: pass url= or set {URL_ENV}")
        if not token:
            raise PublishError(f"no token: pass token= or set {TOKEN_ENV}")
        self.url: str = url
        self.token: str = token
        self.timeout = timeout

    def publish(
        self, group: str, event: Optional[str], data: Any, key: Optional[str] = None
    ) -> str:
        """Sends `data` as event `event` (None: a `message` event) to `group`; returns its id.
        A string is sent as it is, any other value as JSON. With `key` (1 to 255 visible ASCII
        characters), a publish repeated with the same key gets the first one's id and
        publishes nothing."""
        return self.post(request_body(group, event, data, key))[0]

    def publish_many(self, events: Sequence[Event]) -> List[str]:
        """Sends each (group, event, data) or (group, event, data, key) of `events` in order,
        in one request; returns their ids. All or nothing: if one is refused, none is
        published."""
        return self.post({"events": [request_body(*event) for event in events]})

    def post(self, body: Any) -> List[str]:
        """POSTs `body` (an event or `{"events": [...]}`) and returns the ids it got."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    ids = json.load(answer)["ids"]
            except urllib.error.HTTPError as refused:
                raise refusal(refused) from None
            if not isinstance(ids, list) or not all(isinstance(id, str) for id in ids):
                raise TypeError(f"ids are not strings: {ids!r}")
            return ids
        except PublishError:
            raise
        except (ValueError, KeyError, TypeError) as garbled:
            raise PublishError(f"unexpected answer from {self.url}") from garbled
        except (OSError, http.client.HTTPException) as unreachable:
            # Refused, timed out (a server that accepts and never answers, or stops halfway
            # through its answer), cut off, or not speaking HTTP.
            raise PublishError(f"no answer from {self.url}") from unreachable


def request_body(
    group: str, event: Optional[str], data: Any, key: Optional[str] = None
) -> Dict[str, Any]:
    """One event as the endpoint reads it."""
    body: Dict[str, Any] = {"group": group, "event": event, "data": data}
    if key is not None:
        body["key"] = key
    return body


def refusal(answer: urllib.error.HTTPError) -> PublishError:
    """The server's own words for an error answer, when it gave them. Reading them may fail as
    any read does: the caller turns that into a PublishError."""
    try:
        body = json.load(answer)
        return PublishError(f"{answer.code}: {body['error']}", answer.code, body.get("index"))
    except (ValueError, KeyError, TypeError):
        return PublishError(f"{answer.code}: {answer.reason}", answer.code)


def publish(group: str, event: Optional[str], data: Any, key: Optional[str] = None) -> str:
    """Like Publisher().publish: the endpoint and token come from SSE_PUBLISH_URL and
    SSE_PUBLISH_TOKEN."""
    return Publisher().publish(group, event, data, key)


def publish_many(events: Sequence[Event]) -> List[str]:
    """Like Publisher().publish_many, configured by the environment."""
    return Publisher().publish_many(events)
