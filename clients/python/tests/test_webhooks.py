"""`verify_webhook` against a batch signed as the hub signs it (the vector's signature made by
`openssl dgst -sha256 -hmac`, not by Python): accepted once, refused when changed, unsigned,
signed with another secret, or too old to be anything but a replay."""

from __future__ import annotations

import pytest

import sse_publish as sse

SECRET = "webhook-test-secret-of-32-bytes-or-more"
BODY = (
    b'{"time_ms":1765130000123,"hub":"5f0c9a1e77d2b6a3","events":[{"name":"presence-join",'
    b'"time_ms":1765130000001,"group":"room.7","user":"42","meta":"Alice"}]}'
)
TIMESTAMP = "1765130000"
SIGNATURE = "sha256=bb323661f5dbf26de80e2a557f7d6d3e8bbcb82dcf2856a361f757db9ea67372"
NOW = 1765130000 + 20


def test_a_batch_signed_with_the_secret_gives_its_events():
    events = sse.verify_webhook(BODY, TIMESTAMP, SIGNATURE, secret=SECRET, now=NOW)
    assert events == [
        {
            "name": "presence-join",
            "time_ms": 1765130000001,
            "group": "room.7",
            "user": "42",
            "meta": "Alice",
        }
    ]
    assert sse.verify_webhook(BODY.decode(), TIMESTAMP, SIGNATURE, secret=SECRET, now=NOW) == events


def test_the_secret_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(sse.WEBHOOK_SECRET_ENV, SECRET)
    assert len(sse.verify_webhook(BODY, TIMESTAMP, SIGNATURE, now=NOW)) == 1
    monkeypatch.delenv(sse.WEBHOOK_SECRET_ENV)
    with pytest.raises(ValueError, match="no webhook secret"):
        sse.verify_webhook(BODY, TIMESTAMP, SIGNATURE, now=NOW)


@pytest.mark.parametrize(
    "body, timestamp, signature, secret, now, reason",
    [
        (BODY.replace(b'"42"', b'"43"'), TIMESTAMP, SIGNATURE, SECRET, NOW, "bad signature"),
        (BODY, "1765130001", SIGNATURE, SECRET, NOW, "bad signature"),
        (BODY, TIMESTAMP, SIGNATURE, "another-secret-of-32-bytes-or-more", NOW, "bad signature"),
        (BODY, TIMESTAMP, SIGNATURE.replace("sha256=", ""), SECRET, NOW, "bad signature"),
        (BODY, None, SIGNATURE, SECRET, NOW, "no X-SSE-Timestamp or no X-SSE-Signature"),
        (BODY, TIMESTAMP, None, SECRET, NOW, "no X-SSE-Timestamp or no X-SSE-Signature"),
        (BODY, "yesterday", SIGNATURE, SECRET, NOW, "is not a number"),
        (BODY, TIMESTAMP, SIGNATURE, SECRET, NOW + 3600, "a replay"),
    ],
)
def test_anything_else_is_refused_with_the_reason(body, timestamp, signature, secret, now, reason):
    with pytest.raises(sse.WebhookError, match=reason):
        sse.verify_webhook(body, timestamp, signature, secret=secret, now=now)
