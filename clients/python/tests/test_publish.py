"""Publishing to the real server: events arrive with the ids the calls returned, a refusal is a
PublishError with the server's reason, a key makes a retry publish nothing, asyncio too."""

from __future__ import annotations

import asyncio
import json

import pytest

import sse_publish as sse


def test_publish_and_publish_many_arrive_in_order_with_their_ids(server):
    stream = server.stream("py.orders")
    one = sse.publish("py.orders", "created", {"id": 1})
    many = sse.publish_many([("py.orders", None, "two"), ("py.orders", "paid", "three")])
    got = [stream.next() for _ in range(3)]
    assert [(e.get("event", "message"), e["data"], e["id"]) for e in got] == [
        ("created", json.dumps({"id": 1}, separators=(",", ":")), one),
        ("message", "two", many[0]),
        ("paid", "three", many[1]),
    ]


def test_a_refused_batch_says_which_event_and_publishes_nothing(server):
    stream = server.stream("py.refused")
    with pytest.raises(sse.PublishError) as refused:
        sse.publish_many([("py.refused", None, "fine"), ("not a group", None, "bad")])
    assert (refused.value.status, refused.value.index) == (422, 1)
    assert 'invalid group name "not a group"' in str(refused.value)
    # Nothing of the batch came: the next event is the one published now.
    last = sse.publish("py.refused", None, "after")
    event = stream.next()
    assert (event["data"], event["id"]) == ("after", last)


def test_a_wrong_token_is_a_publish_error_with_the_status(server):
    publisher = sse.Publisher(server.publish_url, "wrong-token")
    with pytest.raises(sse.PublishError) as refused:
        publisher.publish("py.any", None, "forged")
    assert (refused.value.status, str(refused.value)) == (401, "401: wrong bearer token")


def test_a_key_makes_a_retry_publish_nothing(server):
    stream = server.stream("py.keyed")
    first = sse.publish("py.keyed", "shipped", "17", key="order-17:shipped")
    again = sse.publish("py.keyed", "shipped", "17", key="order-17:shipped")
    assert again == first
    after = sse.publish("py.keyed", None, "next")
    assert [stream.next()["id"] for _ in range(2)] == [first, after]


def test_asyncio_publishes_the_same_way(server):
    stream = server.stream("py.async")

    async def main():
        publisher = sse.AsyncPublisher()
        one = await sse.publish_async("py.async", None, "one")
        two, three = await publisher.publish_many([("py.async", None, "two"), ("py.async", None, "three")])
        with pytest.raises(sse.PublishError):
            await sse.AsyncPublisher(server.publish_url, "wrong-token").publish("py.async", None, "x")
        return [one, two, three]

    ids = asyncio.run(main())
    assert [(e["data"], e["id"]) for e in (stream.next() for _ in range(3))] == list(
        zip(["one", "two", "three"], ids)
    )


def test_without_configuration_it_says_what_is_missing(monkeypatch):
    monkeypatch.delenv(sse.URL_ENV, raising=False)
    with pytest.raises(sse.PublishError, match="SSE_PUBLISH_URL"):
        sse.publish("g", None, "x")
