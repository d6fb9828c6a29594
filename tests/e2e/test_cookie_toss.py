"""Cookie tossing between preview hosts in Debian chromium, on the default server and the
fleet entry: sandbox B's upstream sends cookies for the whole preview domain (one named
like the gateway's) and B's page script plants more; sandbox A's preview still opens,
and A's app never sees what B's upstream tried to set."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import needs_chromium, shot
from tests.gateway.servers import start_stack

pytestmark = [pytest.mark.e2e, needs_chromium]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("toss"))
    yield stack
    stack.stop()


@pytest.mark.parametrize("entry", ["default", "fleet"])
def test_a_tossed_cookie_does_not_reach_or_break_another_preview(stack, page, entry):
    port = stack.port(entry)
    victim, tosser = stack.grant(), stack.grant()

    def url(grant, path: str) -> str:
        return f"http://{grant.host()}:{port}{path}"

    # B: open its link, get the tossing headers, then the page whose script plants cookies.
    page.goto(url(tosser, f"/echo?edge_token={tosser.http_token}"))
    page.goto(url(tosser, "/toss"))
    page.goto(url(tosser, "/toss-page"))
    page.wait_for_selector("#done")
    jar = [(c["name"], c["domain"], c["value"]) for c in page.context.cookies()]
    # What B's upstream sent stayed on B's host; its copy of our cookie never got through.
    assert ("tossed", tosser.host(), "1") in jar
    assert not [c for c in jar if c[2] == "planted"]
    # The script's copy of our name is for the whole domain: A's requests will carry it.
    assert ("__ns_preview", ".preview.localhost", "planted-by-js") in jar

    # A: its link and then its app, with the planted copy of our cookie in the same header.
    page.goto(url(victim, f"/echo?edge_token={victim.http_token}"))
    seen = json.loads(page.inner_text("body"))
    shot(page, f"cookie-toss-{entry}")
    assert seen["path"] == "/echo"
    sent = dict(seen["headers"]).get("Cookie", "")
    names = {part.strip().partition("=")[0] for part in sent.split(";")}
    assert "tossed" not in names  # B's upstream could not set it for A's host
    assert "jstossed" in names  # a script can (docs/previews.md says why and what to do)
    assert "__ns_preview" not in names  # ours never reaches the app
    page.goto(url(victim, "/echo?again=1"))  # by cookie alone, the planted copy beside it
    assert json.loads(page.inner_text("body"))["path"] == "/echo?again=1"
