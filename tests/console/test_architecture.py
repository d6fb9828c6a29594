"""The layout rules of docs/architecture.md, held by tests: domain code knows nothing of
HTTP, models live in their domain, and a domain error gets its status in one place per
face (console/api/errors.py for /v1, console/views/errors.py for the console)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory
from django_htmx.middleware import HtmxDetails

from console.actor import SYSTEM, Actor
from console.api.errors import ApiError, error_response, status_for
from console.errors import DomainError
from console.models import ActorKind, KeyScope
from console.views.errors import DomainErrorMiddleware
from console.views.errors import status_for as console_status_for

CONSOLE = Path(__file__).resolve().parents[2] / "console"
# Packages of console/ that are shared kits or what Django looks for by name; every
# other package is a domain and is held to the rules below.
KITS = {"api", "views", "models", "jobs", "runtime", "management", "templatetags", "migrations"}
DOMAINS = tuple(
    sorted(p.name for p in CONSOLE.iterdir() if (p / "__init__.py").exists() and p.name not in KITS)
)
# Annotations that name an HTTP request (Django's, or what the faces' decorators make of it).
REQUEST_TYPES = ("HttpRequest", "TeamRequest", "ApiRequest", "ConsoleRequest")


def _is_face(path: Path) -> bool:
    parts = path.relative_to(CONSOLE).parts
    return (
        "api" in parts[:-1]
        or "views" in parts[:-1]
        or parts[-1] in ("api.py", "views.py", "consumers.py")
    )


def _domain_modules() -> list[Path]:
    return sorted(
        path
        for domain in DOMAINS
        for path in (CONSOLE / domain).rglob("*.py")
        if not _is_face(path)
    )


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_domain_code_knows_nothing_of_http():
    assert {"accounts", "keys", "sandboxes", "volumes"} <= set(DOMAINS)
    modules = _domain_modules()
    assert len(modules) > 40  # the walk found the packages
    offenders = []
    for path in modules:
        rel = str(path.relative_to(CONSOLE.parent))
        imports = _imports(path)
        if any(name == "console.api" or name.startswith("console.api.") for name in imports):
            offenders.append(f"{rel} imports the /v1 kit")
        if any(n.startswith("django.http") for n in imports):
            offenders.append(f"{rel} imports django.http")
        if "ApiError" in path.read_text():
            offenders.append(f"{rel} names ApiError (raise DomainError)")
    assert offenders == []


def _request_parameters(path: Path) -> list[str]:
    """Parameters that take an HTTP request: annotated as one, or named `request` with
    no annotation (or `Any`), the way a request slips through untyped. A parameter
    named `request` of another type (an ExecRequest) is not one."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            annotation = ast.unparse(arg.annotation) if arg.annotation else ""
            untyped = annotation in ("", "Any", "Any | None")
            if any(name in annotation for name in REQUEST_TYPES) or (
                arg.arg == "request" and untyped
            ):
                found.append(f"{node.name}({arg.arg})")
    return found


def test_domain_functions_take_an_actor_not_the_request():
    """Who acts and from where travel as an Actor (console/actor.py); a service that
    takes the request could read anything from it, and could not be called off one."""
    offenders = [
        f"{path.relative_to(CONSOLE.parent)}: {', '.join(params)}"
        for path in _domain_modules()
        if (params := _request_parameters(path))
    ]
    assert offenders == []


def test_the_request_check_sees_a_request_parameter(tmp_path):
    module = tmp_path / "service.py"
    module.write_text(
        "def a(x, *, request=None): ...\n"
        "def b(request: Any): ...\n"
        "def c(req: HttpRequest | None): ...\n"
        "def d(request: ExecRequest): ...\n"
        "def e(actor: Actor): ...\n"
    )
    assert _request_parameters(module) == ["a(request)", "b(request)", "c(req)"]


# Parameter names that say who acts. A domain function takes an Actor instead (its user,
# key and address), so no caller has to pick which of them to pass, and none is lost.
ACTING_NAMES = ("user", "api_key", "by", "created_by", "created_by_key", "triggered_by")
# Types that name a key or a person when no name says so.
ACTING_TYPES = ("ApiKey", "AbstractUser", "AbstractBaseUser", "User")
# Parameters of those names or types that are a subject, not the acting party.
SUBJECTS = {
    # The person who joins a team by an invitation (it is its own actor, no one else's).
    "console/accounts/members.py: accept_invitation(user)",
    # Whose teams and projects a query lists.
    "console/accounts/models/teams.py: for_user(user)",
    "console/accounts/models/projects.py: for_user(user)",
    # The key being revoked or rotated (who does it is the actor).
    "console/keys/service.py: revoke_api_key(key)",
    "console/keys/service.py: rotate_api_key(key)",
}


def _public_functions(tree: ast.Module):
    """Module functions and class methods not named with a leading underscore."""
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        for member in members:
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                if not member.name.startswith("_"):
                    yield member


def _acting_parameters(path: Path) -> list[str]:
    """Parameters of public functions that name who acts (a user or a key) apart from
    an Actor. A `user` typed `str` is a login name inside a sandbox, not a person."""
    found = []
    for function in _public_functions(ast.parse(path.read_text())):
        args = function.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            annotation = ast.unparse(arg.annotation) if arg.annotation else ""
            names_one = arg.arg in ACTING_NAMES and annotation not in ("str", "str | None")
            typed_one = any(
                part.strip() in ACTING_TYPES for part in annotation.replace("'", "").split("|")
            )
            if names_one or typed_one:
                found.append(f"{function.name}({arg.arg})")
    return found


def test_domain_functions_take_who_acts_as_an_actor():
    """Not a user or a key beside it: create_grant(created_by=, created_by_key=) once let
    each caller choose, and a grant's audit row lost the caller's address."""
    found = {
        f"{path.relative_to(CONSOLE.parent)}: {param}"
        for path in _domain_modules()
        for param in _acting_parameters(path)
    }
    assert found - SUBJECTS == set()
    assert SUBJECTS - found == set(), "an allowed subject is gone: drop it from SUBJECTS"


def test_the_actor_check_sees_a_user_or_key_parameter(tmp_path):
    module = tmp_path / "service.py"
    module.write_text(
        "def a(grant, by=None): ...\n"
        "def b(sandbox, *, api_key: ApiKey | None): ...\n"
        "def c(team, *, created_by=None): ...\n"
        "class D:\n"
        "    def e(self, owner: 'User'): ...\n"
        "def f(files, path, user: str | None): ...\n"  # a login name in the sandbox
        "def g(grant, *, actor: Actor): ...\n"
        "def _h(by): ...\n"  # private helpers are their callers' business
    )
    assert _acting_parameters(module) == ["a(by)", "b(api_key)", "c(created_by)", "e(owner)"]


def test_every_model_lives_in_a_domain_package_under_the_one_app():
    for model in apps.get_app_config("console").get_models():
        module = model.__module__
        assert model._meta.app_label == "console"
        assert not module.startswith("console.models."), f"{model.__name__} in {module}"
        package = module.split(".")[1]
        assert package in (*DOMAINS, "jobs", "api"), f"{model.__name__} in {module}"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("sandbox_not_found", 404),
        ("volume_conflict", 409),
        ("volume_busy", 409),
        ("volume_limit_exceeded", 429),
        ("quota_exceeded", 429),
        ("runtime_error", 500),
        ("runtime_unavailable", 503),
        ("invalid_request", 400),
        ("bundle_digest_mismatch", 400),
    ],
)
def test_v1_status_of_a_domain_code(code, status):
    assert status_for(DomainError(code, "x")) == status


def _refusals() -> list[tuple[DomainError, int, int]]:
    """Each domain refusal that has its own class, with its /v1 and console statuses."""
    from console.accounts.members import MembershipError
    from console.keys.service import KeyLimitReached
    from console.paging import BadCursor
    from console.previews.service import GrantLimitReached, PreviewRefused
    from console.ssh.ca import InvalidPublicKey
    from console.ssh.relay import RelayBusy
    from console.webhooks.secrets import signing_key
    from console.webhooks.targets import TargetRefused

    try:
        signing_key("not a secret")
    except DomainError as refused:
        bad_secret = refused
    return [
        (PreviewRefused("port 0 is out of range"), 400, 400),
        (GrantLimitReached("too many grants"), 429, 429),
        (KeyLimitReached(3), 429, 429),
        (MembershipError("last_owner_conflict", "a team needs an owner"), 409, 409),
        (MembershipError("invitation_conflict", "no longer valid"), 409, 409),
        (TargetRefused("invalid_request", "url must name a host"), 400, 400),
        (bad_secret, 400, 400),
        (InvalidPublicKey("not a key"), 400, 400),
        (BadCursor("cursor belongs to another list"), 400, 400),
        (RelayBusy("every port is in use"), 503, 503),
    ]


def test_domain_refusals_are_domain_errors_with_a_status_on_each_face():
    for error, v1_status, console_status in _refusals():
        assert isinstance(error, DomainError), type(error)
        assert (status_for(error), console_status_for(error)) == (v1_status, console_status), error


def test_v1_upload_refusals_answer_by_reason():
    def refused(reason: str) -> int:
        return status_for(DomainError("file_upload_error", "x", error_detail={"reason": reason}))

    assert refused("part_out_of_range") == 416
    assert refused("size_limit_exceeded") == 413
    assert refused("upload_expired") == 410
    assert refused("whole_checksum_mismatch") == 400


def test_v1_face_error_keeps_its_own_status_and_headers():
    error = ApiError("rate_limit_exceeded", "slow down", headers={"Retry-After": "3"})
    response = error_response(RequestFactory().get("/v1/x"), error)
    assert response.status_code == 429
    assert response["Retry-After"] == "3"


def _console_request(path: str, *, htmx: bool = False):
    headers = {"HX-Request": "true"} if htmx else {}
    request = RequestFactory().post(path, headers=headers)
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    request.user = AnonymousUser()
    request.htmx = HtmxDetails(request)
    return request


@pytest.mark.django_db
def test_console_answers_an_escaped_domain_error_by_its_code():
    middleware = DomainErrorMiddleware(lambda request: None)
    path = "/t/acme/p/web/volumes/vol_1/delete"

    missing = middleware.process_exception(
        _console_request(path), DomainError("volume_not_found", "Volume vol_1 not found")
    )
    assert missing.status_code == 404

    busy = DomainError("volume_busy", "Volume data is in use: mounted by sb_1")
    page = middleware.process_exception(_console_request(path), busy)
    assert page.status_code == 409
    assert b"mounted by sb_1" in page.content

    request = _console_request(path, htmx=True)
    fragment = middleware.process_exception(request, busy)
    assert fragment.status_code == 409
    assert [str(m) for m in request._messages] == [busy.message]


def test_console_middleware_leaves_v1_and_other_exceptions_alone():
    middleware = DomainErrorMiddleware(lambda request: None)
    v1 = RequestFactory().get("/v1/volumes/vol_1")
    assert middleware.process_exception(v1, DomainError("volume_busy", "x")) is None
    assert middleware.process_exception(_console_request("/t/a"), ValueError("x")) is None


@pytest.mark.django_db
def test_actor_of_a_request(api_key, read_key, member):
    request = RequestFactory().get("/")
    request.api_key = read_key[1]
    by_key = Actor.of(request)
    assert by_key.api_key == read_key[1]
    assert by_key.scope == KeyScope.READ
    assert by_key.reason == "api"
    assert by_key.client_ip == "127.0.0.1"  # what the audit row records

    request = RequestFactory().get("/")
    request.user = member
    person = Actor.of(request)
    assert person.user == member and person.api_key is None and person.scope is None
    assert person.reason == "console"

    assert SYSTEM.kind == ActorKind.SYSTEM and SYSTEM.reason == "system"
