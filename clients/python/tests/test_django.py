"""The Django helpers in a configured Django (sqlite in memory), against the real server: an
event published on commit arrives after the commit and never after a rollback; the template
tags put a token for the request's user in the page, which the server accepts."""

from __future__ import annotations

import types

import django
import pytest
from django.conf import settings

settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "sse_publish"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
    USE_TZ=True,
)
django.setup()

from django.contrib.auth.models import AnonymousUser, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.template import Context, Template  # noqa: E402

import sse_publish as sse  # noqa: E402
from sse_publish.django import publish_on_commit, token_for  # noqa: E402
from support import open_stream, token_part  # noqa: E402


class Rollback(Exception):
    pass


def test_an_event_is_published_after_the_commit_and_never_after_a_rollback(server):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)")
    stream = server.stream("dj.orders")

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO orders (id) VALUES (1)")
        publish_on_commit("dj.orders", "created", {"id": 1})
    created = stream.next()
    assert (created["event"], created["data"]) == ("created", '{"id":1}')

    with pytest.raises(Rollback):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO orders (id) VALUES (2)")
            publish_on_commit("dj.orders", "created", {"id": 2})
            raise Rollback()
    # Nothing of the rolled back order came: the next event is the one published now.
    sse.publish("dj.orders", "check", "after the rollback")
    assert stream.next()["data"] == "after the rollback"
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM orders")
        assert cursor.fetchall() == [(1,)]


def test_the_template_tag_gives_the_page_a_stream_for_its_user(server, monkeypatch):
    monkeypatch.setattr(settings, "SSE_TOKEN_SECRET", server.token_secret, raising=False)
    call_command("migrate", run_syncdb=True, verbosity=0)
    alice = User.objects.create(username="alice")
    request = types.SimpleNamespace(user=alice)
    mine = f"dj.user.{alice.pk}"
    page = Template("{% load sse %}{% sse_events_url url group %}").render(
        Context({"request": request, "url": f"{server.events}{mine}", "group": mine})
    )
    stream = open_stream(page)
    sse.publish(mine, None, "for alice")
    assert stream.next()["data"] == "for alice"

    token = Template("{% load sse %}{% sse_token 'dj.room' %}").render(Context({"request": request}))
    claims = token_part(token, 1)
    assert (claims["sub"], claims["meta"], claims["groups"]) == (str(alice.pk), "alice", ["dj.room"])
    assert "sub" not in token_part(token_for(AnonymousUser(), ["dj.room"]), 1)


def test_webhook_events_checks_a_request_with_the_setting_s_secret(monkeypatch):
    from django.test import RequestFactory

    from test_webhooks import BODY, SECRET, SIGNATURE, TIMESTAMP
    from sse_publish.django import webhook_events

    monkeypatch.setattr(settings, "SSE_WEBHOOK_SECRET", SECRET, raising=False)
    monkeypatch.setattr("time.time", lambda: int(TIMESTAMP) + 1)
    headers = {"HTTP_X_SSE_TIMESTAMP": TIMESTAMP, "HTTP_X_SSE_SIGNATURE": SIGNATURE}
    signed = RequestFactory().post("/sse/webhooks", BODY, "application/json", **headers)
    assert [event["name"] for event in webhook_events(signed)] == ["presence-join"]
    forged = RequestFactory().post("/sse/webhooks", BODY + b" ", "application/json", **headers)
    with pytest.raises(sse.WebhookError, match="bad signature"):
        webhook_events(forged)
