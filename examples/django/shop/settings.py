"""A small shop beside an `sse` server: orders are saved in sqlite and announced to their
buyer's page once saved. Configured by the environment:

- SSE_HUB_URL: where pages reach the `sse` server (http://127.0.0.1:8001)
- SSE_PUBLISH_URL, SSE_PUBLISH_TOKEN: its publish endpoint and token
- SSE_TOKEN_SECRET: the HS256 secret its `sse::TokenKeys` verifies page tokens with
- SHOP_DB: the sqlite file (db.sqlite3 here)
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "an example's key: set SHOP_SECRET_KEY in earnest")
DEBUG = os.environ.get("SHOP_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "sse_publish",  # {% load sse %}
    "shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "shop.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
LOGIN_URL = "/login/guest"

SSE_HUB_URL = os.environ.get("SSE_HUB_URL", "http://127.0.0.1:8001")
# SSE_PUBLISH_URL, SSE_PUBLISH_TOKEN and SSE_TOKEN_SECRET are read from the environment by
# sse_publish.django; set them here instead if you like.
