"""`{% load sse %}` (with "sse_publish" in INSTALLED_APPS): a subscription token, or a stream's
URL with one, for the user of the request being rendered.

    <script>
      const source = new EventSource("{% sse_events_url 'https://hub.example.com/events/room.7' 'room.7' %}");
    </script>
    <meta name="sse-token" content="{% sse_token 'room.7' 'user.42.*' %}">
"""

from __future__ import annotations

from typing import Any

from django import template

from ..django import events_url, token_for

register = template.Library()


@register.simple_tag(takes_context=True)
def sse_token(context: Any, *groups: str) -> str:
    """A token for `groups`, for the request's user."""
    return token_for(context["request"].user, groups)


@register.simple_tag(takes_context=True)
def sse_events_url(context: Any, url: str, *groups: str) -> str:
    """`url` with `?token=` for `groups`, for the request's user."""
    return events_url(url, context["request"].user, groups)
