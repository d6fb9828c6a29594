"""The sandbox page's code cell through Django's test client: who may run code, and what a
sandbox without a kernel says (the kernel itself: tests/console/test_cli_code.py and
tests/e2e/test_code_console.py)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import make_sandbox_row

pytestmark = pytest.mark.django_db


def run_url(sandbox) -> str:
    project = sandbox.project
    return reverse(
        "sandbox-code-run",
        kwargs={
            "team_slug": project.team.slug,
            "project_slug": project.slug,
            "sandbox_id": sandbox.public_id,
        },
    )


def detail_url(sandbox) -> str:
    return run_url(sandbox).removesuffix("code/run/")


def test_member_sees_the_cell_viewer_only_its_note(project, member_client, viewer_client):
    sandbox = make_sandbox_row(project)
    page = member_client.get(detail_url(sandbox)).content.decode()
    assert 'id="code-form"' in page and "js/code_cell.js" in page
    page = viewer_client.get(detail_url(sandbox)).content.decode()
    assert 'id="code-form"' not in page and "Members can run code here" in page


def test_viewer_cannot_run_code_and_outsider_gets_404(project, viewer_client, outsider_client):
    sandbox = make_sandbox_row(project)
    assert viewer_client.post(run_url(sandbox), {"code": "print(1)"}).status_code == 403
    assert outsider_client.post(run_url(sandbox), {"code": "print(1)"}).status_code == 404


def test_a_base_sandbox_says_how_to_get_a_kernel(sandbox, member_client):
    # Without JavaScript: the page again, with the reason in the cell.
    answer = member_client.post(run_url(sandbox), {"code": "print(1)"})
    assert answer.status_code == 409
    page = answer.content.decode()
    assert "cannot run a Jupyter kernel" in page and "print(1)" in page
    # The streaming cell gets the error as JSON before any event.
    answer = member_client.post(
        run_url(sandbox), {"code": "print(1)"}, HTTP_ACCEPT="text/event-stream"
    )
    assert answer.status_code == 409
    assert answer.json()["code"] == "code_interpreter_unavailable"


def test_an_unisolated_server_offers_no_kernel(project, member_client, settings):
    settings.RUNTIME_ISOLATION = "none"
    sandbox = make_sandbox_row(project)
    answer = member_client.post(
        run_url(sandbox), {"code": "print(1)"}, HTTP_ACCEPT="text/event-stream"
    )
    assert answer.status_code == 409
    assert "needs isolated sandboxes" in answer.json()["error"]


@pytest.fixture
def code_sandbox(runtime, project):
    from console.actor import SYSTEM
    from console.sandboxes import service

    made, _token = service.create_sandbox(project, actor=SYSTEM, template="code-interpreter")
    yield made
    service.destroy_sandbox(made, actor=SYSTEM)


def test_without_javascript_the_page_shows_the_output(code_sandbox, member_client):
    member_client.post(run_url(code_sandbox), {"code": "x = 6"})
    answer = member_client.post(run_url(code_sandbox), {"code": "print('six', x)\nx * 7"})
    assert answer.status_code == 200
    page = answer.content.decode()
    assert '<pre class="code-stdout">six 6\n</pre>' in page
    assert '<pre class="code-result">42</pre>' in page
