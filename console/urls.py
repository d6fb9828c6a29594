from __future__ import annotations

from django.urls import include, path

from console.api.health import healthz
from console.views.favicon import favicon

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("v1/", include("console.api.urls")),
    path("", include("console.views.urls")),
]
