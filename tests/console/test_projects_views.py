from __future__ import annotations

import pytest

from console.models import AuditEvent, Project, Sandbox

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def test_project_detail(viewer_client, project):
    response = viewer_client.get("/t/acme/p/web/")
    assert response.status_code == 200
    body = response.content.decode()
    assert project.public_id in body
    # The project menu links the pages that exist.
    assert 'href="/t/acme/p/web/keys/"' in body and 'href="/t/acme/members/"' in body


def test_switcher_lists_only_my_teams(member_client, project, other_project):
    body = member_client.get("/t/acme/p/web/").content.decode()
    assert "/t/acme/p/web/" in body and "/t/other/" not in body


def test_create_project(owner_client, team):
    response = owner_client.post("/t/acme/projects/new/", {"name": "API server"})
    assert response["Location"] == "/t/acme/p/api-server/"
    project = Project.objects.get(team=team, slug="api-server")
    assert AuditEvent.objects.filter(action="project.create", target_id=project.public_id).exists()


def test_create_project_htmx(owner_client, team):
    response = owner_client.post("/t/acme/projects/new/", {"name": "Docs"}, **HX)
    assert response["HX-Redirect"] == "/t/acme/p/docs/"
    invalid = owner_client.post("/t/acme/projects/new/", {"name": ""}, **HX)
    assert invalid.status_code == 200
    assert invalid.content.decode().lstrip().startswith('<section id="project-list"')
    assert "This field is required" in invalid.content.decode()


def test_rename_and_fragment(owner_client, project):
    plain = owner_client.post("/t/acme/p/web/settings/", {"name": "Website"})
    assert plain["Location"] == "/t/acme/p/web/settings/"
    project.refresh_from_db()
    assert project.name == "Website" and project.slug == "web"
    fragment = owner_client.post("/t/acme/p/web/settings/", {"name": "Web"}, **HX)
    assert fragment.content.decode().lstrip().startswith('<form id="project-form"')


def test_delete_project(owner_client, project):
    assert owner_client.get("/t/acme/p/web/delete/").status_code == 200
    response = owner_client.post("/t/acme/p/web/delete/")
    assert response["Location"] == "/t/acme/"
    assert not Project.objects.filter(pk=project.pk).exists()


def test_delete_refused_with_live_sandboxes(owner_client, project):
    Sandbox.objects.create(project=project, status="running")
    response = owner_client.post("/t/acme/p/web/delete/")
    assert response.status_code == 302
    assert Project.objects.filter(pk=project.pk).exists()


def test_viewer_and_member_cannot_change_projects(viewer_client, member_client, project):
    for client in (viewer_client, member_client):
        assert client.post("/t/acme/projects/new/", {"name": "x"}).status_code == 403
        assert client.post("/t/acme/p/web/settings/", {"name": "x"}).status_code == 403
        assert client.post("/t/acme/p/web/delete/").status_code == 403
    assert Project.objects.filter(team=project.team).count() == 1


def test_other_teams_project_is_404(owner_client, other_project, project):
    for url in ("/t/other/p/secret/", "/t/other/p/secret/settings/", "/t/acme/p/secret/"):
        assert owner_client.get(url).status_code == 404, url
    assert owner_client.post("/t/other/p/secret/delete/").status_code == 404
    assert Project.objects.filter(pk=other_project.pk).exists()


def test_csrf_enforced(csrf_client, project):
    assert csrf_client.post("/t/acme/p/web/delete/").status_code == 403
    assert Project.objects.filter(pk=project.pk).exists()


def test_menu_hides_pages_the_role_cannot_open(viewer_client, owner_client, project):
    viewer_page = viewer_client.get("/t/acme/p/web/").content.decode()
    assert 'href="/t/acme/p/web/settings/"' not in viewer_page
    assert 'href="/t/acme/settings/"' not in viewer_page
    owner_page = owner_client.get("/t/acme/p/web/").content.decode()
    assert 'href="/t/acme/p/web/settings/"' in owner_page


def test_team_pages_keep_the_last_project_menu(owner_client, project, team):
    from tests.factories import make_project

    make_project(team, "Zeta")
    owner_client.get("/t/acme/p/zeta/")
    members_page = owner_client.get("/t/acme/members/").content.decode()
    assert 'href="/t/acme/p/zeta/keys/"' in members_page


def test_forbidden_and_not_found_pages_use_the_layout(viewer_client, project):
    forbidden = viewer_client.post("/t/acme/p/web/settings/", {"name": "x"})
    assert forbidden.status_code == 403 and b"Your role does not allow this" in forbidden.content
    missing = viewer_client.get("/t/nope/")
    assert missing.status_code == 404 and b"Page not found" in missing.content
