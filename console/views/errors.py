"""Domain errors on console pages: the one place where a DomainError becomes a console
response (docs/architecture.md, "Errors").

Views that can say something useful in place catch DomainError themselves and show
its message (`messages.error`); one that escapes a console view lands here instead of
becoming a 500. A `*_not_found` code is the console's 404 page (another team's ids look
the same as missing ones); anything else is the page the request came from with the
message, or for an htmx fragment an empty answer whose `messages` event shows it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.defaults import page_not_found

from console.errors import DomainError
from console.htmx import is_fragment_request

# Console statuses by kind of code; the /v1 table (console/api/errors.py) is richer
# because API clients branch on the status, people read the message.
CONFLICT_CODES = {
    "conflict",
    "sandbox_not_ready",
    "snapshot_in_use",
    "volume_busy",
    "code_interpreter_unavailable",
}


def status_for(error: DomainError) -> int:
    """The HTTP status of a console response for an error."""
    code = error.code
    if code == "not_found" or code.endswith("_not_found"):
        return 404
    if code == "permission_denied" or code.endswith("_permission_denied"):
        return 403
    if code in CONFLICT_CODES or code.endswith("_conflict"):
        return 409
    if "quota" in code or code.endswith("_limit_exceeded"):
        return 429
    if code in ("runtime_error", "runtime_unavailable", "volume_error", "internal_error"):
        return 503
    return 400


class DomainErrorMiddleware:
    """Answers a DomainError that escaped a console view (not /v1: its decorator answers
    every error there with the JSON envelope)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DomainError) or request.path.startswith("/v1/"):
            return None
        status = status_for(exception)
        if status == 404:
            return page_not_found(request, Http404(exception.message))
        if is_fragment_request(request):
            messages.error(request, exception.message)
            return HttpResponse(status=status)
        return render(request, "console/error.html", {"error": exception}, status=status)
