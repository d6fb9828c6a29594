from __future__ import annotations

import pytest

from console.models import AuditEvent, Membership, Team

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def test_create_team_makes_owner_and_default_project(outsider_client, outsider):
    response = outsider_client.post("/teams/new/", {"name": "Rocket Lab"})
    team = Team.objects.get(name="Rocket Lab")
    assert response["Location"] == f"/t/{team.slug}/p/default/"
    assert Membership.objects.get(team=team, user=outsider).role == "owner"
    assert AuditEvent.objects.filter(team=team, action="team.create").exists()


def test_team_detail_lists_projects(viewer_client, project):
    response = viewer_client.get("/t/acme/")
    assert response.status_code == 200
    assert b"Web" in response.content and b"<html" in response.content
    # A viewer sees no create-project form.
    assert b"Create project" not in response.content


def test_team_detail_htmx_fragment(viewer_client, project):
    response = viewer_client.get("/t/acme/", **HX)
    assert response.content.decode().lstrip().startswith('<section id="project-list"')


def test_other_team_is_404(member_client, other_team):
    for url in ("/t/other/", "/t/other/settings/", "/t/other/delete/", "/t/nope/"):
        assert member_client.get(url).status_code == 404, url
    assert member_client.post("/t/other/settings/", {"name": "x"}).status_code == 404


def test_rename_team(owner_client, team):
    response = owner_client.post("/t/acme/settings/", {"name": "Acme Corp"})
    assert response.status_code == 302
    team.refresh_from_db()
    assert team.name == "Acme Corp" and team.slug == "acme"
    assert AuditEvent.objects.filter(team=team, action="team.rename").exists()


def test_rename_team_htmx_returns_form_fragment(owner_client, team):
    response = owner_client.post("/t/acme/settings/", {"name": "Acme Corp"}, **HX)
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<form id="team-form"')
    assert "messages" in response.headers["HX-Trigger"]


def test_viewer_and_member_cannot_rename_or_delete(viewer_client, member_client, team):
    for client in (viewer_client, member_client):
        assert client.post("/t/acme/settings/", {"name": "x"}).status_code == 403
        assert client.post("/t/acme/delete/").status_code == 403
    team.refresh_from_db()
    assert team.name == "Acme"


def test_delete_team_needs_confirmation_page_then_post(owner_client, team):
    page = owner_client.get("/t/acme/delete/")
    assert page.status_code == 200 and b"Delete team" in page.content
    response = owner_client.post("/t/acme/delete/")
    assert response.status_code == 302
    assert not Team.objects.filter(slug="acme").exists()
    assert AuditEvent.objects.filter(action="team.delete", target_id="acme", team=None).exists()


def test_delete_team_htmx_redirects_client(owner_client, team):
    response = owner_client.post("/t/acme/delete/", **HX)
    assert response.status_code == 200 and response["HX-Redirect"] == "/"


def test_csrf_enforced(csrf_client, team):
    assert csrf_client.post("/t/acme/settings/", {"name": "x"}).status_code == 403
    assert csrf_client.post("/teams/new/", {"name": "x"}).status_code == 403
