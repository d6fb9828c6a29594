from __future__ import annotations

import json

from tests.gateway.conftest import header, http


async def test_edge_token_bootstrap_then_cookie(routed, grant):
    _, raw = grant
    response = await http(routed, f"/echo/x?a=1&edge_token={raw['http_port']}&b=2").get_response()
    assert response["status"] == 303, response
    assert header(response, b"location") == b"/echo/x?a=1&b=2"
    cookie = header(response, b"set-cookie").decode()
    value = cookie.split(";")[0]
    response = await http(
        routed, "/echo/x?a=1&b=2", headers=[(b"cookie", value.encode() + b"; other=1")]
    ).get_response(timeout=5)
    assert response["status"] == 200, response
    seen = json.loads(response["body"])
    print(seen)
