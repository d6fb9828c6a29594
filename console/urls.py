from __future__ import annotations

from django.urls import include, path

from console.api.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("v1/", include("console.api.urls")),
    path("", include("console.views.urls")),
]
