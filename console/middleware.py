"""A request id on every request, echoed as X-Request-Id and put in every API error."""

from __future__ import annotations

import secrets


def new_request_id() -> str:
    return "req_" + secrets.token_hex(8)


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = new_request_id()
        response = self.get_response(request)
        response["X-Request-Id"] = request.request_id
        return response
