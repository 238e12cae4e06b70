"""Webhooks from an `sse` hub (`sse::Webhooks`, or `sse-hub` with SSE_WEBHOOK_URL): checking
that a POST was signed with the shared secret, and lately, then reading its events.

    events = sse.verify_webhook(body, request.headers.get("X-SSE-Timestamp"),
                                request.headers.get("X-SSE-Signature"))
    for event in events:            # {"name": "presence-join", "group": "room.7", "user": "42", ...}
        ...

The signature is `sha256=` and the hex HMAC-SHA256, keyed with the secret, of the timestamp, a
`.`, and the body as received (bytes, before any parsing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any, Dict, List, Optional, Union

WEBHOOK_SECRET_ENV = "SSE_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-SSE-Signature"
TIMESTAMP_HEADER = "X-SSE-Timestamp"
DELIVERY_HEADER = "X-SSE-Delivery"


class WebhookError(ValueError):
    """A POST that is not a webhook from the hub: unsigned, signed with another secret or long
    ago (a replay), or not a batch of events. Answer it 4xx (the hub drops a batch refused so)."""


def verify_webhook(
    body: Union[bytes, str],
    timestamp: Optional[str],
    signature: Optional[str],
    *,
    secret: Union[str, bytes, None] = None,
    tolerance: float = 300,
    now: Optional[float] = None,
) -> List[Dict[str, Any]]:
    """The events of a webhook batch whose `body`, `timestamp` (the X-SSE-Timestamp header) and
    `signature` (X-SSE-Signature) check out with `secret` (default: SSE_WEBHOOK_SECRET), signed
    at most `tolerance` seconds from `now`; else raises WebhookError saying why."""
    secret = secret if secret is not None else os.environ.get(WEBHOOK_SECRET_ENV)
    if not secret:
        raise ValueError(f"no webhook secret: pass secret= or set {WEBHOOK_SECRET_ENV}")
    key = secret.encode() if isinstance(secret, str) else secret
    raw = body.encode() if isinstance(body, str) else bytes(body)
    if not timestamp or not signature:
        raise WebhookError(f"no {TIMESTAMP_HEADER} or no {SIGNATURE_HEADER} header")
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise WebhookError(f"{TIMESTAMP_HEADER} {timestamp!r} is not a number") from None
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance:
        raise WebhookError(f"signed {current - signed_at:.0f} s away from now: a replay, or a clock off")
    expected = hmac.new(key, timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(f"sha256={expected}", signature):
        raise WebhookError("bad signature")
    try:
        events = json.loads(raw)["events"]
    except (ValueError, KeyError, TypeError):
        raise WebhookError("signed, but not a batch of events") from None
    if not isinstance(events, list):
        raise WebhookError("signed, but not a batch of events")
    return events
