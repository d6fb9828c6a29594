from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from console.api.auth import PUBLIC
from console.api.errors import api_error

# Resources of the contract this server does not offer yet: `not_implemented` (501) tells
# the client (and a person) that the route is known but unavailable, unlike a 404.
NOT_YET = ("templates",)


@csrf_exempt
def unknown_route(request: HttpRequest, rest: str = "") -> JsonResponse:
    if rest.startswith(NOT_YET):
        return api_error(
            request,
            "not_implemented",
            f"{request.method} {request.path} is not available on this server yet",
        )
    return api_error(request, "not_found", f"No API route {request.method} {request.path}")


unknown_route.api_scope = PUBLIC  # type: ignore[attr-defined]  # the guard test's marker
