"""Django helpers: publish once a transaction commits, and put a subscription token for the
request's user in a page. Importing this module needs Django; `sse_publish` itself does not.

Settings (each falls back to the environment variable of the same name): SSE_PUBLISH_URL,
SSE_PUBLISH_TOKEN, SSE_TOKEN_SECRET, SSE_WEBHOOK_SECRET; SSE_TOKEN_TTL (seconds, 3600 unless set).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Optional
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction

from .publisher import Publisher, PublishError
from .tokens import subscribe_token
from .webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_webhook

logger = logging.getLogger("sse_publish")


def publisher() -> Publisher:
    """A publisher configured by the settings, else the environment."""
    return Publisher(
        getattr(settings, "SSE_PUBLISH_URL", None),
        getattr(settings, "SSE_PUBLISH_TOKEN", None),
    )


def publish_on_commit(
    group: str,
    event: Optional[str],
    data: Any,
    key: Optional[str] = None,
    using: Optional[str] = None,
) -> None:
    """Publishes once the current transaction (of database `using`) commits, and not at all if
    it rolls back, so a page never hears of a row that was not saved; outside a transaction, at
    once. A publish that fails then is logged to the "sse_publish" logger rather than raised:
    what it announces is saved already, and the request should not fail for it."""

    def send() -> None:
        try:
            publisher().publish(group, event, data, key)
        except PublishError:
            logger.exception("publishing %r to %r after the commit failed", event, group)

    transaction.on_commit(send, using=using)


def token_for(user: Any, groups: Iterable[str], ttl: Optional[float] = None) -> str:
    """A subscription token for `groups` (exact names or `prefix.*`) as Django user `user`: a
    signed-in user is the stream's user (their primary key, their username as its metadata),
    so they count in presence; an anonymous one streams anonymously."""
    identity = meta = None
    if user is not None and getattr(user, "is_authenticated", False):
        identity, meta = str(user.pk), user.get_username()
    return subscribe_token(
        list(groups),
        identity,
        meta=meta,
        ttl=ttl if ttl is not None else getattr(settings, "SSE_TOKEN_TTL", 3600),
        secret=getattr(settings, "SSE_TOKEN_SECRET", None),
    )


def events_url(url: str, user: Any, groups: Iterable[str], ttl: Optional[float] = None) -> str:
    """`url` (the server's stream) with `?token=` for `user`: what a page gives `EventSource`,
    which cannot send headers."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}{urlencode({'token': token_for(user, groups, ttl)})}"


def webhook_events(request: Any) -> list:
    """The events of the hub's webhook POSTed in `request`, checked with SSE_WEBHOOK_SECRET;
    raises `sse_publish.WebhookError` (answer it 401) when it is not the hub's, or too old.

        @csrf_exempt
        @require_POST
        def sse_webhooks(request):
            try:
                events = webhook_events(request)
            except WebhookError:
                return HttpResponse(status=401)
            for event in events:
                ...
            return HttpResponse(status=204)
    """
    return verify_webhook(
        request.body,
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        secret=getattr(settings, "SSE_WEBHOOK_SECRET", None),
    )
