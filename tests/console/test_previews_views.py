"""Console preview-link pages: create (link shown once), live table, revoke, access rules."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from django.utils import timezone

from console.actor import SYSTEM
from console.models import AuditEvent, PreviewGrant, Sandbox, SandboxStatus
from console.previews import service as previews
from tests.factories import make_sandbox_row

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def sandbox(project):
    return make_sandbox_row(project)


@pytest.fixture
def urls(team, project, sandbox):
    project_kwargs = {"team_slug": team.slug, "project_slug": project.slug}
    sandbox_kwargs = {**project_kwargs, "sandbox_id": sandbox.public_id}
    return {
        "list": reverse("grant-list", kwargs=project_kwargs),
        "table": reverse("grant-table", kwargs=project_kwargs),
        "create": reverse("grant-create", kwargs=project_kwargs),
        "sandbox_list": reverse("grant-sandbox-list", kwargs=sandbox_kwargs),
        "sandbox_create": reverse("grant-sandbox-create", kwargs=sandbox_kwargs),
    }


def revoke_url(team, project, grant) -> str:
    return reverse(
        "grant-revoke",
        kwargs={"team_slug": team.slug, "project_slug": project.slug, "grant_id": grant.public_id},
    )


def test_page_lists_grants_with_counters(owner_client, urls, sandbox):
    grant, _ = previews.create_grant(sandbox, 3000, actor=SYSTEM)
    PreviewGrant.objects.filter(pk=grant.pk).update(
        use_count=7, http_request_count=6, websocket_connection_count=1, bytes_out_count=2048
    )
    response = owner_client.get(urls["list"])
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" in html and 'id="grant-table"' in html
    assert grant.public_id in html
    assert 'hx-trigger="grants-changed from:body, grant-created from:body"' in html
    assert 'data-live-socket="' + urls["list"] + 'live/ws"' in html and "every " not in html
    assert "<svg" in html  # the usage chart appears once a grant has been used
    assert ">7<" in html and "2.0\xa0KB" in html


def test_htmx_gets_the_fragment_not_the_page(owner_client, urls, sandbox):
    previews.create_grant(sandbox, 3000, actor=SYSTEM)
    fragment = owner_client.get(urls["table"], **HX).content.decode()
    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<section class="card" id="grant-table"')
    listed = owner_client.get(urls["list"], **HX).content.decode()
    assert "<html" not in listed and 'id="grant-table"' in listed


def test_create_signed_link_shows_raw_link_once(member_client, urls, sandbox):
    response = member_client.post(
        urls["create"],
        {"sandbox": sandbox.public_id, "port": 3000, "expires": "900", "kind": "link"},
        **HX,
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    grant = PreviewGrant.objects.get()
    assert grant.auth_mode == "direct" and grant.port == 3000
    assert round((grant.expires_at - grant.issued_at).total_seconds()) == 900
    html = response.content.decode()
    assert "<html" not in html
    assert "edge_token=nsg_" in html and "shown only once" in html
    assert 'id="issued-ws-link">ws://' in html and "edge_token=nsgw_" in html
    assert "data-copy-target" in html
    assert "grant-created" in response["HX-Trigger"]  # the polled table refreshes at once
    page = member_client.get(urls["list"]).content.decode()
    assert grant.public_id in page and "edge_token=" not in page


def test_a_persons_grant_and_its_audit_rows_name_the_person_and_address(
    member_client, member, urls, team, project, sandbox
):
    """The console face passes its Actor: the grant records the signed-in person (no
    key) and both audit rows that person and the browser's address."""
    member_client.post(
        urls["create"],
        {"sandbox": sandbox.public_id, "port": 3000, "expires": "900", "kind": "link"},
        **HX,
    )
    grant = PreviewGrant.objects.get()
    assert (grant.created_by, grant.created_by_key) == (member, None)
    member_client.post(revoke_url(team, project, grant), **HX)
    rows = AuditEvent.objects.filter(target_id=grant.public_id).order_by("id")
    assert [(r.action, r.actor, r.actor_label, r.ip) for r in rows] == [
        ("preview_grant.created", member, member.get_username(), "127.0.0.1"),
        ("preview_grant.revoked", member, member.get_username(), "127.0.0.1"),
    ]


def test_create_proxy_target_shows_nginx_and_caddy_snippets(member_client, urls, sandbox):
    response = member_client.post(
        urls["sandbox_create"],
        {
            "sandbox": sandbox.public_id,
            "port": 8080,
            "expires": "3600",
            "kind": "proxy",
            "transports": ["http", "websocket"],
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    grant = PreviewGrant.objects.get()
    assert grant.auth_mode == "proxy" and grant.token_kinds == ["http_port", "websocket_port"]
    for needle in (
        "proxy_set_header x-nullspace-preview-proxy-token",
        "header_up x-nullspace-preview-proxy-token",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Forwarded-For",
        "nsp_",
        "nspw_",
        previews.preview_host(sandbox, 8080),
    ):
        assert needle in html, needle


def test_proxy_target_needs_a_transport(member_client, urls, sandbox):
    response = member_client.post(
        urls["create"],
        {"sandbox": sandbox.public_id, "port": 8080, "expires": "3600", "kind": "proxy"},
        **HX,
    )
    # 200 so that htmx swaps the form back in with its errors (it does not swap a 4xx).
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="grant-form"' in html and "Choose at least one transport" in html
    assert "<html" not in html
    assert not PreviewGrant.objects.exists()


def test_reserved_port_is_refused(member_client, urls, sandbox):
    response = member_client.post(
        urls["create"],
        {"sandbox": sandbox.public_id, "port": 22, "expires": "900", "kind": "link"},
        **HX,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="grant-form"' in html and 'aria-invalid="true"' in html
    assert 'role="alert"' in html and "Port: port 22 is reserved" in html
    assert not PreviewGrant.objects.exists()


def test_revoke_in_one_click_with_htmx(member_client, urls, team, project, sandbox):
    grant, _ = previews.create_grant(sandbox, 3000, actor=SYSTEM)
    page = member_client.get(urls["list"]).content.decode()
    assert "hx-confirm=" in page and revoke_url(team, project, grant) in page
    response = member_client.post(revoke_url(team, project, grant), **HX)
    assert response.status_code == 200
    assert "<html" not in response.content.decode()
    grant.refresh_from_db()
    assert grant.status == "revoked"
    assert 'data-status="revoked"' in response.content.decode()


def test_revoke_without_js_confirms_then_redirects(member_client, urls, team, project, sandbox):
    grant, _ = previews.create_grant(sandbox, 3000, actor=SYSTEM)
    url = revoke_url(team, project, grant)
    confirm = member_client.get(url)
    assert confirm.status_code == 200 and "Revoke preview" in confirm.content.decode()
    response = member_client.post(url)
    assert response.status_code == 302 and response["Location"] == urls["list"]
    grant.refresh_from_db()
    assert grant.revoked_at is not None


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_revoke_never_redirects_off_site(member_client, urls, team, project, sandbox, target):
    grant, _ = previews.create_grant(sandbox, 3000, actor=SYSTEM)
    url = revoke_url(team, project, grant) + "?" + urlencode({"next": target})
    confirm = member_client.get(url).content.decode()
    home = urls["list"]
    assert f'href="{target}"' not in confirm and f'href="{home}"' in confirm
    response = member_client.post(url)
    assert response.status_code == 302 and response["Location"] == urls["list"]


def test_viewer_reads_but_cannot_change(viewer_client, urls, team, project, sandbox):
    grant, _ = previews.create_grant(sandbox, 3000, actor=SYSTEM)
    page = viewer_client.get(urls["list"]).content.decode()
    assert grant.public_id in page
    assert "read-only access" in page and 'id="grant-form"' not in page
    assert revoke_url(team, project, grant) not in page
    created = viewer_client.post(
        urls["create"],
        {"sandbox": sandbox.public_id, "port": 3000, "expires": "900", "kind": "link"},
    )
    assert created.status_code == 403
    assert viewer_client.post(revoke_url(team, project, grant)).status_code == 403
    grant.refresh_from_db()
    assert grant.revoked_at is None and PreviewGrant.objects.count() == 1


def test_outsider_and_foreign_objects_are_404(
    outsider_client, owner_client, urls, team, project, other_project
):
    assert outsider_client.get(urls["list"]).status_code == 404
    foreign = make_sandbox_row(other_project)
    foreign_grant, _ = previews.create_grant(foreign, 3000, actor=SYSTEM)
    kwargs = {"team_slug": team.slug, "project_slug": project.slug, "sandbox_id": foreign.public_id}
    assert owner_client.get(reverse("grant-sandbox-list", kwargs=kwargs)).status_code == 404
    assert owner_client.post(revoke_url(team, project, foreign_grant)).status_code == 404
    foreign_grant.refresh_from_db()
    assert foreign_grant.revoked_at is None
    # A sandbox of another project cannot be chosen in the create form either.
    response = owner_client.post(
        urls["create"],
        {"sandbox": foreign.public_id, "port": 3000, "expires": "900", "kind": "link"},
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert PreviewGrant.objects.filter(sandbox=foreign).count() == 1


def test_post_without_csrf_token_is_refused(csrf_client, urls, sandbox):
    response = csrf_client.post(
        urls["create"],
        {"sandbox": sandbox.public_id, "port": 3000, "expires": "900", "kind": "link"},
    )
    assert response.status_code == 403
    assert not PreviewGrant.objects.exists()


def test_paused_sandbox_page_offers_no_form(owner_client, urls, sandbox):
    Sandbox.objects.filter(pk=sandbox.pk).update(status=SandboxStatus.DESTROYED)
    page = owner_client.get(urls["sandbox_list"]).content.decode()
    assert 'id="grant-form"' not in page and "No running sandbox" in page


def test_navigation_links_to_preview_links(owner_client, team, project, urls):
    page = owner_client.get(
        reverse("project-detail", kwargs={"team_slug": team.slug, "project_slug": project.slug})
    )
    assert urls["list"] in page.content.decode()


def test_grants_page_by_cursor_and_count_every_active_one(owner_client, urls, sandbox):
    made = [previews.create_grant(sandbox, 3000, actor=SYSTEM)[0] for _ in range(130)]
    PreviewGrant.objects.filter(pk__in=[g.pk for g in made[:40]]).update(revoked_at=timezone.now())
    seen: list[str] = []
    page = owner_client.get(urls["list"]).content.decode()
    assert "90 active" in page  # counted in SQL over every grant, not over the page shown
    while True:
        seen += re.findall(r'<tr id="grant-(\w+)"', page)
        older = re.search(r'rel="next" href="\?after=([\w-]+)"', page)
        if not older:
            break
        page = owner_client.get(urls["list"], {"after": older[1]}).content.decode()
    assert len(seen) == 130 and set(seen) == {g.public_id for g in made}


def test_revoke_from_a_later_page_stays_on_that_page(owner_client, urls, sandbox):
    made = [previews.create_grant(sandbox, 3000, actor=SYSTEM)[0] for _ in range(30)]
    first = owner_client.get(urls["list"]).content.decode()
    older = re.search(r'rel="next" href="\?after=([\w-]+)"', first)[1]
    second = owner_client.get(urls["list"], {"after": older}).content.decode()
    target = made[0]  # the oldest: on page 2
    link = re.search(rf'hx-post="([^"]*{target.public_id}/revoke/[^"]*)"', second)[1]
    answer = owner_client.post(link.replace("&amp;", "&"), **HX).content.decode()
    assert f'id="grant-{target.public_id}" data-status="revoked"' in answer
    assert answer.count("<tr id=") == 5
