"""Publish Server-Sent Events from Python (Django, Celery, a script) to an axum `sse` server's
publish endpoint (`sse::PublishEndpoint`), and sign the tokens its pages subscribe with
(`sse::Token`). Standard library only.

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

From asyncio: `await sse.publish_async(...)`, `await sse.AsyncPublisher(...).publish(...)`.

Every failure raises PublishError: a refusal with the server's message, no answer (refused,
timed out, cut off) with the cause chained.

A page subscribes with a token the app signs (SSE_TOKEN_SECRET, the server's HS256 secret):

    token = sse.subscribe_token(["room.7"], user="alice", ttl=3600)

The hub's webhooks (streams opened and closed, presence joins and leaves) are checked with

    events = sse.verify_webhook(body, timestamp_header, signature_header)   # SSE_WEBHOOK_SECRET

Django: `sse_publish.django` (publish_on_commit, tokens for a request's user, webhook_events)
and, with
"sse_publish" in INSTALLED_APPS, `{% load sse %}`. From a shell:

    python3 -m sse_publish GROUP EVENT DATA        (EVENT "" for a `message` event)
"""

from .aio import AsyncPublisher, publish_async, publish_many_async
from .publisher import (
    TOKEN_ENV,
    URL_ENV,
    Event,
    PublishError,
    Publisher,
    publish,
    publish_many,
)
from .tokens import SECRET_ENV, subscribe_token
from .webhooks import WEBHOOK_SECRET_ENV, WebhookError, verify_webhook

__all__ = [
    "AsyncPublisher",
    "Event",
    "PublishError",
    "Publisher",
    "SECRET_ENV",
    "TOKEN_ENV",
    "URL_ENV",
    "WEBHOOK_SECRET_ENV",
    "WebhookError",
    "publish",
    "publish_async",
    "publish_many",
    "publish_many_async",
    "subscribe_token",
    "verify_webhook",
]
