"""/v1/sandboxes/{id}/ssh-access (docs/ssh.md). SshAccess is lenient on the client side,
but its keys are still the contract's and nothing more."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from console.actor import Actor
from console.api.auth import WRITE, api_key_required, methods
from console.sandboxes import service as sandboxes
from console.ssh import access


@api_key_required(WRITE)
def create_ssh_access(request: HttpRequest, sandbox_id: str) -> JsonResponse:
    sandbox = sandboxes.get_sandbox(request.project, sandbox_id)  # type: ignore[attr-defined]
    body = access.issue(sandbox, request.json, actor=Actor.of(request))  # type: ignore[attr-defined]
    return JsonResponse(body)


urlpatterns = [
    path(
        "sandboxes/<str:sandbox_id>/ssh-access",
        methods(POST=create_ssh_access),
        name="v1-sandbox-ssh-access",
    ),
]
