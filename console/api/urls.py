"""The /v1 URLconf. Each resource module adds its own `urlpatterns` list here."""

from __future__ import annotations

from django.urls import re_path

from console.api import fallback
from console.api import files as files_api
from console.api import uploads as uploads_api

urlpatterns: list = []
urlpatterns += files_api.urlpatterns
urlpatterns += uploads_api.urlpatterns

# The catch-all must stay last: unknown routes answer the contract's envelope.
urlpatterns += [re_path(r"^(?P<rest>.*)$", fallback.unknown_route, name="v1-unknown")]
