"""Subscription tokens: what a page sends an `sse` server (`sse::Token`) to stream the groups
the app allows it, signed HS256 with the secret the server verifies them with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any, Dict, Iterable, Optional, Union

SECRET_ENV = "SSE_TOKEN_SECRET"


def subscribe_token(
    groups: Iterable[str],
    user: Optional[str] = None,
    *,
    meta: Optional[str] = None,
    ttl: float = 3600,
    secret: Union[str, bytes, None] = None,
    kid: Optional[str] = None,
) -> str:
    """A token that lets its holder stream `groups` (exact names, or `prefix.*` for every group
    under `prefix.`) for `ttl` seconds, as `user` (counted in presence, with `meta` as their
    metadata) if given.

    `secret` (at least 32 bytes; default: SSE_TOKEN_SECRET) is the server's
    `sse::TokenKey::hs256` secret; `kid` names it when the server keeps it under an id.

        token = subscribe_token(["room.7", f"user.{user.pk}.*"], user=str(user.pk))
        # the page: new EventSource(`/events/room.7?token=${token}`)
    """
    secret = secret if secret is not None else os.environ.get(SECRET_ENV)
    if not secret:
        raise ValueError(f"no token secret: pass secret= or set {SECRET_ENV}")
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < 32:
        raise ValueError(f"a token secret needs at least 32 bytes, this one has {len(key)}")
    if isinstance(groups, str):
        raise TypeError("groups is a list of group names, not one string")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    header = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    claims: Dict[str, Any] = {"groups": list(groups), "exp": int(time.time() + ttl)}
    if user is not None:
        claims["sub"] = user
    if meta is not None:
        claims["meta"] = meta
    message = f"{_b64(_json(header))}.{_b64(_json(claims))}"
    signature = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return f"{message}.{_b64(signature)}"


def _json(value: Dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
