"""Publish Server-Sent Events from Python (Django, Celery, a script) to an axum `sse` server's
publish endpoint (`sse::PublishEndpoint`). Standard library only: copy this file into your project.

The call of the Django package, unchanged:

    import sse_publish as sse

    sse.publish("yo", "yo", "yo from a to b")      # group, event, data: returns the event's id

configured by two environment variables: SSE_PUBLISH_URL (https://example.com/sse/publish) and
SSE_PUBLISH_TOKEN (the endpoint's bearer token). Or with a publisher of your own:

    publisher = sse.Publisher("https://example.com/sse/publish", token)
    publisher.publish("yo", None, "a `message` event")
    publisher.publish("yo", "yo", {"from": "a", "to": "b"})   # other data is sent as JSON
    publisher.publish_many([("yo", "yo", "one"), ("yo.bob", "yo", "two")])  # all or nothing

An idempotency key makes a retry safe: the same key, within the server's window (5 minutes by
default), gets the first publish's id and publishes nothing.

    sse.publish("orders", "shipped", {"id": 17}, key="order-17:shipped")
    publisher.publish_many([("yo", "yo", "one", "yo-1"), ("yo", "yo", "two", "yo-2")])

Every failure raises PublishError: a refusal with the server's message, no answer (refused,
timed out, cut off) with the cause chained. From a shell:

    python3 sse_publish.py GROUP EVENT DATA        (EVENT "" for a `message` event)
"""

import json
import os
import sys
import urllib.error
import urllib.request

URL_ENV = "SSE_PUBLISH_URL"
TOKEN_ENV = "SSE_PUBLISH_TOKEN"


class PublishError(Exception):
    """The events were not published: the server refused them (its message is this error's),
    or could not be reached (the cause is chained).

    `status` is the HTTP status (None when there was no answer); `index` the event of a batch
    that was refused (None when the whole request was)."""

    def __init__(self, message, status=None, index=None):
        super().__init__(message)
        self.status = status
        self.index = index


class Publisher:
    """Publishes to the endpoint at `url` with `token`; either defaults to its environment
    variable (SSE_PUBLISH_URL, SSE_PUBLISH_TOKEN)."""

    def __init__(self, url=None, token=None, timeout=10.0):
        self.url = url or os.environ.get(URL_ENV)
        self.token = token or os.environ.get(TOKEN_ENV)
        if not self.url:
            raise PublishError(f"no publish endpoint: pass url= or set {URL_ENV}")
        if not self.token:
            raise PublishError(f"no token: pass token= or set {TOKEN_ENV}")
        self.timeout = timeout

    def publish(self, group, event, data, key=None):
        """Sends `data` as event `event` (None: a `message` event) to `group`; returns its id.
        A string is sent as it is, any other value as JSON. With `key` (1 to 255 visible ASCII
        characters), a publish repeated with the same key gets the first one's id and
        publishes nothing."""
        return self._post(_event(group, event, data, key))[0]

    def publish_many(self, events):
        """Sends each (group, event, data) or (group, event, data, key) of `events` in order,
        in one request; returns their ids. All or nothing: if one is refused, none is
        published."""
        return self._post({"events": [_event(*event) for event in events]})

    def _post(self, body):
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
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.load(answer)["ids"]
        except urllib.error.HTTPError as refused:
            raise _refusal(refused) from None
        except (ValueError, KeyError, TypeError) as garbled:
            raise PublishError(f"unexpected answer from {self.url}") from garbled
        except OSError as unreachable:
            # URLError, and what urlopen lets through: a timeout while reading the answer,
            # a connection reset.
            raise PublishError(f"no answer from {self.url}") from unreachable


def _event(group, event, data, key=None):
    event = {"group": group, "event": event, "data": data}
    if key is not None:
        event["key"] = key
    return event


def _refusal(answer):
    """The server's own words for an error answer, when it gave them."""
    try:
        body = json.load(answer)
        return PublishError(f"{answer.code}: {body['error']}", answer.code, body.get("index"))
    except (ValueError, KeyError, TypeError):
        return PublishError(f"{answer.code}: {answer.reason}", answer.code)


def publish(group, event, data, key=None):
    """Like Publisher().publish: the endpoint and token come from SSE_PUBLISH_URL and
    SSE_PUBLISH_TOKEN."""
    return Publisher().publish(group, event, data, key)


def publish_many(events):
    """Like Publisher().publish_many, configured by the environment."""
    return Publisher().publish_many(events)


def main(args):
    if len(args) != 3:
        print(f"usage: {URL_ENV}=... {TOKEN_ENV}=... sse_publish.py GROUP EVENT DATA", file=sys.stderr)
        return 2
    group, event, data = args
    try:
        print(publish(group, event or None, data))
    except PublishError as error:
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        print(f"sse_publish: {error}{cause}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
