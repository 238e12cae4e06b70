from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("login/<str:name>", views.login_as),
    path("order", views.order),
]
