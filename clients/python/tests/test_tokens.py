"""Tokens signed by `subscribe_token`, verified by the real server's `sse::Token`: they open the
groups they name, as their user, and nothing else."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

import sse_publish as sse
from support import token_part




def test_a_token_streams_the_groups_it_names_and_under_its_prefixes(server):
    token = sse.subscribe_token(["py.room", "py.user.7.*"], user="7", secret=server.token_secret)
    room = server.stream("py.room", token)
    inbox = server.stream("py.user.7.inbox", token)
    sse.publish("py.room", None, "to the room")
    sse.publish("py.user.7.inbox", None, "to 7")
    assert room.next()["data"] == "to the room"
    assert inbox.next()["data"] == "to 7"


def test_the_server_refuses_what_the_token_does_not_allow(server):
    token = sse.subscribe_token(["py.user.7.*"], user="7", secret=server.token_secret)
    forged = sse.subscribe_token(["py.user.8.inbox"], secret="another-secret-of-32-bytes-or-more")
    for group, token, status, reason in [
        ("py.user.8.inbox", token, 403, "the token does not allow group py.user.8.inbox"),
        ("py.user.8.inbox", forged, 401, "bad signature"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.events}{group}?token={token}", timeout=20)
        assert (refused.value.code, refused.value.read().decode()) == (status, reason)


def test_its_claims_say_the_groups_the_user_and_the_expiry():
    before = time.time()
    token = sse.subscribe_token(["a", "b.*"], "alice", meta="Alice", ttl=60, secret="s" * 32, kid="k1")
    header, claims = token_part(token, 0), token_part(token, 1)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    assert (claims["groups"], claims["sub"], claims["meta"]) == (["a", "b.*"], "alice", "Alice")
    assert before + 59 <= claims["exp"] <= before + 61
    assert "sub" not in token_part(sse.subscribe_token(["a"], secret="s" * 32), 1)


def test_a_short_or_missing_secret_or_a_string_of_groups_is_refused(monkeypatch):
    monkeypatch.delenv(sse.SECRET_ENV, raising=False)
    with pytest.raises(ValueError, match="SSE_TOKEN_SECRET"):
        sse.subscribe_token(["a"])
    with pytest.raises(ValueError, match="at least 32 bytes"):
        sse.subscribe_token(["a"], secret="short")
    with pytest.raises(TypeError):
        sse.subscribe_token("a", secret="s" * 32)
