"""/v1/keys: the 1.0.3 key routes (docs/api.md §8), acting on the caller key's project.

Rotation here kills the old key at once (the console's rule), where 1.0.3 keeps it for 24 h.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, JsonResponse
from django.urls import path

from console.accounts.forms import ApiKeyApiForm
from console.actor import Actor
from console.api.auth import READ, WRITE, ApiRequest, api_key_required, methods
from console.api.errors import ApiError
from console.api.listing import api_page, page_body, wants_page, whole_list
from console.keys.service import (
    IssuedKey,
    create_api_key,
    revoke_api_key,
    rotate_api_key,
)
from console.models import ApiKey, KeyScope
from console.paging import Keyset
from console.timefmt import iso

DEFAULT_KEY_NAME = "default"
KEYSET = Keyset("key", "created_at")


def _key_body(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.public_id,
        "prefix": key.prefix,
        "name": key.name,
        "scope": key.scope,
        "expires_at": iso(key.expires_at),
    }


def _issued_body(issued: IssuedKey) -> dict[str, Any]:
    return {**_key_body(issued.key), "key": issued.raw}


def _clean(request: ApiRequest) -> dict[str, Any]:
    form = ApiKeyApiForm({k: v for k, v in request.json.items() if v is not None})
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        raise ApiError("invalid_request", f"{field}: {errors[0]}", details={"field": field})
    return form.cleaned_data


def _key(request: ApiRequest, key_id: str) -> ApiKey:
    key = ApiKey.objects.filter(project=request.project, public_id=key_id).first()
    if key is None:
        raise ApiError("not_found", f"API key {key_id} not found")
    return key


@api_key_required(WRITE)
def create_key(request: ApiRequest) -> HttpResponse:
    data = _clean(request)
    issued = create_api_key(
        request.project,
        name=data["name"] or "api",
        scope=data["scope"] or KeyScope.FULL,
        actor=Actor.of(request),
        via="api",
    )
    return JsonResponse(_issued_body(issued), status=201)


@api_key_required(READ)
def list_keys(request: ApiRequest) -> HttpResponse:
    """A bare list (1.0.3) of every key, or keyset pages when asked for."""
    keys = request.project.api_keys.select_related("rotated_from")
    if wants_page(request):
        return JsonResponse(page_body(api_page(request, keys, KEYSET), ApiKey.to_dict))
    found = whole_list(keys, KEYSET, what="API keys")
    return JsonResponse([key.to_dict() for key in found], safe=False)


@api_key_required(WRITE)
def default_key(request: ApiRequest) -> HttpResponse:
    """Idempotent: the project's active key named "default", created on first call."""
    existing = next(
        (
            k
            for k in request.project.api_keys.filter(name=DEFAULT_KEY_NAME, revoked_at__isnull=True)
            if k.is_active
        ),
        None,
    )
    if existing is not None:
        return JsonResponse({"created": False, **_key_body(existing)})
    issued = create_api_key(
        request.project, name=DEFAULT_KEY_NAME, actor=Actor.of(request), via="api"
    )
    return JsonResponse({"created": True, **_issued_body(issued)}, status=201)


@api_key_required(WRITE)
def delete_key(request: ApiRequest, key_id: str) -> HttpResponse:
    key = _key(request, key_id)
    revoke_api_key(key, actor=Actor.of(request), via="api")
    return JsonResponse({"success": True})


@api_key_required(WRITE)
def rotate_key(request: ApiRequest, key_id: str) -> HttpResponse:
    key = _key(request, key_id)
    if not key.is_active:
        raise ApiError("conflict", f"API key {key_id} is {key.status} and cannot be rotated")
    data = _clean(request)
    issued = rotate_api_key(
        key,
        name=data["name"] or None,
        scope=data["scope"] or None,
        actor=Actor.of(request),
        via="api",
    )
    return JsonResponse(_issued_body(issued), status=201)


urlpatterns = [
    path("keys", methods(GET=list_keys, POST=create_key), name="v1-keys"),
    path("keys/default", methods(POST=default_key), name="v1-keys-default"),
    path("keys/<str:key_id>", methods(DELETE=delete_key), name="v1-key"),
    path("keys/<str:key_id>/rotate", methods(POST=rotate_key), name="v1-key-rotate"),
]
