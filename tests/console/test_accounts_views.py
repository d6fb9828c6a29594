from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from console.models import AuditEvent, Membership, Project
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "another-long-passphrase"


@pytest.fixture(autouse=True)
def _own_cache_keys(settings):
    # A fresh key prefix per test: lockout counters never leak between tests, and a shared
    # Redis (REDIS_URL) is not flushed under other test runs.
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": uuid.uuid4().hex}}


def test_home_sends_visitors_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/signin/"


def test_home_sends_members_to_their_first_project(member_client, project):
    response = member_client.get("/")
    assert response["Location"] == "/t/acme/p/web/"


def test_home_without_projects_goes_to_team(outsider_client, other_team):
    assert outsider_client.get("/")["Location"] == "/t/other/"


def test_signup_creates_personal_team_with_default_project(client):
    response = client.post("/signup/", {"email": "New@Example.com", "password": PASSWORD})
    assert response.status_code == 302
    user = get_user_model().objects.get(username="new@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == "owner" and membership.team.personal
    project = Project.objects.get(team=membership.team)
    assert project.name == "Default"
    assert client.get(response["Location"], follow=True).status_code == 200
    assert client.get("/")["Location"] == f"/t/{membership.team.slug}/p/default/"


def test_signup_rejects_weak_password_and_duplicate_email(client, owner):
    weak = client.post("/signup/", {"email": "x@example.com", "password": "123"})
    assert weak.status_code == 200 and b"too short" in weak.content
    dup = client.post("/signup/", {"email": owner.email, "password": PASSWORD})
    assert dup.status_code == 200 and b"already exists" in dup.content


def test_signup_follows_safe_next_only(client):
    ok = client.post(
        "/signup/", {"email": "a@example.com", "password": PASSWORD, "next": "/invite/?token=x"}
    )
    assert ok["Location"] == "/invite/?token=x"
    other = Client()
    evil = other.post(
        "/signup/",
        {"email": "b@example.com", "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert evil["Location"] == "/"


def test_signin_and_audit(client, owner, team):
    response = client.post("/signin/", {"username": "ALICE@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/t/acme/").status_code == 200
    event = AuditEvent.objects.get(action="signin", team=team)
    assert event.actor == owner and event.ip == "127.0.0.1"


def test_signin_wrong_password(client, owner):
    response = client.post("/signin/", {"username": owner.email, "password": "nope"})
    assert response.status_code == 200
    assert b"Email or password is wrong" in response.content


def test_signin_locks_out_after_failures(client, owner, team, settings):
    settings.SIGNIN_MAX_FAILURES = 3
    for _ in range(3):
        client.post("/signin/", {"username": owner.email, "password": "wrong"})
    locked = client.post("/signin/", {"username": owner.email, "password": PASSWORD})
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="signin.locked", team=team).count() == 1


def test_lockout_counts_per_ip_across_usernames(client, owner, settings):
    settings.SIGNIN_MAX_FAILURES_PER_IP = 3
    for name in ("a@example.com", "b@example.com", "c@example.com"):
        client.post("/signin/", {"username": name, "password": "wrong"})
    locked = client.post("/signin/", {"username": owner.email, "password": PASSWORD})
    assert locked.status_code == 429
    elsewhere = Client(REMOTE_ADDR="10.0.0.9")
    assert (
        elsewhere.post("/signin/", {"username": owner.email, "password": PASSWORD}).status_code
        == 302
    )


def test_a_second_user_behind_the_same_ip_is_not_locked_out(client, owner, member, settings):
    settings.SIGNIN_MAX_FAILURES = 5
    for _ in range(5):
        client.post("/signin/", {"username": owner.email, "password": "wrong"})
    assert (
        client.post("/signin/", {"username": owner.email, "password": PASSWORD}).status_code == 429
    )
    colleague = Client()  # same REMOTE_ADDR (127.0.0.1), another account
    signed_in = colleague.post("/signin/", {"username": member.email, "password": PASSWORD})
    assert signed_in.status_code == 302
    # The locked user from another address still signs in: the pair is locked, not the email.
    from_home = Client(REMOTE_ADDR="192.0.2.7")
    assert (
        from_home.post("/signin/", {"username": owner.email, "password": PASSWORD}).status_code
        == 302
    )


def test_client_ip_comes_from_a_trusted_proxy_header_only_when_configured(owner, settings):
    from django.test import RequestFactory

    from console.client_ip import client_ip

    factory = RequestFactory()
    forged = factory.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9")
    assert client_ip(forged) == "10.0.0.1"  # not configured: the header is ignored
    settings.TRUSTED_PROXY_HEADER = "X-Forwarded-For"
    assert client_ip(forged) == "203.0.113.9"  # the address our one proxy saw
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(forged) == "6.6.6.6"
    bad = factory.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="not-an-ip")
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(bad) == "10.0.0.1"
    # Behind the proxy, lockout follows the real client, not the proxy's address.
    settings.SIGNIN_MAX_FAILURES = 2
    attacker = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1")
    for _ in range(2):
        attacker.post("/signin/", {"username": owner.email, "password": "wrong"})
    user = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2")
    assert user.post("/signin/", {"username": owner.email, "password": PASSWORD}).status_code == 302


def test_success_clears_username_failures(client, owner, settings):
    settings.SIGNIN_MAX_FAILURES = 3
    for _ in range(2):
        client.post("/signin/", {"username": owner.email, "password": "wrong"})
    assert (
        client.post("/signin/", {"username": owner.email, "password": PASSWORD}).status_code == 302
    )
    other = Client(REMOTE_ADDR="10.0.0.8")
    other.post("/signin/", {"username": owner.email, "password": "wrong"})
    assert (
        Client(REMOTE_ADDR="10.0.0.7")
        .post("/signin/", {"username": owner.email, "password": PASSWORD})
        .status_code
        == 302
    )


def test_signout_is_post_only(owner_client):
    assert owner_client.get("/signout/").status_code == 405
    assert owner_client.post("/signout/").status_code == 302
    assert owner_client.get("/t/acme/").status_code == 302


def test_password_change(owner_client, owner, team):
    response = owner_client.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)


def test_password_reset_by_email(client, owner):
    response = client.post("/password-reset/", {"email": owner.email})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"http://\S+", mail.outbox[0].body).group(0)
    path = link.split("testserver", 1)[1]
    form_page = client.get(path, follow=True)
    assert form_page.status_code == 200 and b"Set a new password" in form_page.content
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert done.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password(NEW_PASSWORD)


def test_signin_page_and_csrf(db):
    client = Client(enforce_csrf_checks=True)
    assert client.get("/signin/").status_code == 200
    assert (
        client.post("/signin/", {"username": "a@example.com", "password": "x"}).status_code == 403
    )


def test_signout_csrf_enforced(csrf_client):
    assert csrf_client.post("/signout/").status_code == 403
