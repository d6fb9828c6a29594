from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from console.api.auth import PUBLIC
from console.api.errors import api_error


@csrf_exempt
def unknown_route(request: HttpRequest, rest: str = "") -> JsonResponse:
    return api_error(request, "not_found", f"No API route {request.method} {request.path}")


unknown_route.api_scope = PUBLIC  # type: ignore[attr-defined]  # the guard test's marker
