"""The page, with a stream of its buyer's orders; placing an order, announced once saved."""

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from sse_publish.django import publish_on_commit

from .models import Order


def orders_group(user):
    """The group of `user`'s orders: their page alone may stream it."""
    return f"orders.{user.pk}"


def login_as(request, name):
    """The example has no passwords: /login/alice signs in as alice."""
    user, _ = User.objects.get_or_create(username=name)
    login(request, user)
    return redirect("index")


@login_required
def index(request):
    group = orders_group(request.user)
    return render(
        request,
        "shop/index.html",
        {
            "group": group,
            "events": f"{settings.SSE_HUB_URL}/events/{group}",
            "orders": Order.objects.filter(buyer=request.user),
        },
    )


class Refused(Exception):
    pass


@login_required
@require_POST
def order(request):
    """Saves the order and announces it once the transaction commits; with `fail`, the
    transaction rolls back after the announcement was asked for, and nothing is announced."""
    try:
        with transaction.atomic():
            placed = Order.objects.create(buyer=request.user, item=request.POST["item"])
            publish_on_commit(
                orders_group(request.user), "order", {"id": placed.pk, "item": placed.item}
            )
            if request.POST.get("fail"):
                raise Refused()
    except Refused:
        return HttpResponse("rolled back", status=409)
    return HttpResponse(str(placed.pk), status=201)
