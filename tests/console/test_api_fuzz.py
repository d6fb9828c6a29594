"""Property-based test: every /v1 route, driven with generated paths, queries and bodies,
answers without a 5xx, and every error is the contract's envelope.

The routes come from walking the URLconf (a new route is fuzzed without editing this
file). Path parameters are either the real ids of a running sandbox of the key's
project or generated strings (NUL, lone surrogates, overlong, ...); bodies are
generated JSON (deep, huge numbers, NaN, wrong types) or raw bytes under assorted
Content-Types. Commands that reach exec are confined to harmless or missing binaries,
as the sandbox shares this machine. Bounded by FUZZ_EXAMPLES (default 400 requests)
and derandomized so CI is repeatable; set FUZZ_EXAMPLES higher to search longer.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.api.urls import urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Routes that end or replace the sandbox: fuzzed with generated ids only, never its own.
DESTRUCTIVE = re.compile(r"(hibernate|timeout|resume|/fork)$|^sandboxes/<str:sandbox_id>$")
SAFE_COMMANDS = ["true", "echo", "/nonexistent/binary", "", "cat /dev/null"]


def _routes() -> list[tuple[str, str]]:
    found = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                methods = getattr(pattern.callback, "api_methods", None)
                for method in methods or ["GET", "POST", "PUT", "DELETE"]:
                    found.append((route, method))

    walk(urlpatterns)
    return found


ROUTES = _routes()

weird_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec=None, categories=["Cs", "Cc"]), min_size=1, max_size=8),
    st.sampled_from(
        ["\x00", "a\x00b", "\ud800", "..", "../../etc/passwd", "/", "%", "x" * 5000, "1e400"]
    ),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    weird_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "path", "paths", "content", "command", "args", "cwd", "envs", "env_vars", "metadata",
    "timeout_secs", "timeout", "timeout_ms", "template", "transports", "expires_in_seconds",
    "name", "scope", "encoding", "recursive", "pattern", "query", "data", "pid", "port",
    "mode", "source", "destination", "snapshot_id", "background", "shell", "limit", "files",
]  # fmt: skip
json_bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
raw_bodies = st.one_of(
    st.just(b"[" * 20_000 + b"]" * 20_000),
    st.just(b'{"timeout_secs": 1e400, "cwd": NaN, "metadata": {"a": Infinity}}'),
    st.just(b'{"path": "\\ud800", "envs": {"A\\u0000": "1", "B=C": "2"}}'),
    st.binary(max_size=64),
)
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "image/png"]
)


def _fill(route: str, real: dict[str, str], draw) -> str:
    def value(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2)
        if name in real and draw(st.booleans()):
            return real[name]
        if kind == "int":
            return str(draw(st.integers(min_value=0, max_value=2**40)))
        text = draw(weird_text) or "x"
        return quote(text.encode("utf-8", "surrogatepass"), safe="")

    return "/v1/" + re.sub(r"<(\w+):(\w+)>", value, route)


def _query(draw) -> str:
    pairs = draw(st.lists(st.tuples(st.sampled_from(FIELDS + ["state"]), weird_text), max_size=3))
    return "&".join(
        f"{quote(k)}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in pairs
    )


@pytest.fixture
def fuzz_client(api_key):
    client = Client(raise_request_exception=False)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_key[0]}"
    return client


@pytest.mark.timeout(900)
def test_every_route_answers_bad_input_without_a_5xx(sandbox, fuzz_client, settings_for_fuzz):
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    real = {"sandbox_id": sandbox.public_id, "ref": sandbox.public_id, "port": "8080"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def one_request(data) -> None:
        route, method = data.draw(st.sampled_from(ROUTES))
        ids = {} if DESTRUCTIVE.search(route) and method != "GET" else real
        path = _fill(route, ids, data.draw)
        query = _query(data.draw)
        if data.draw(st.booleans()):
            body = json.dumps(data.draw(json_bodies)).encode("utf-8", "surrogatepass")
            if route.endswith("/exec") or "command" in body.decode("utf-8", "replace"):
                decoded = json.loads(body)
                decoded["command"] = data.draw(st.sampled_from(SAFE_COMMANDS))
                decoded.pop("shell", None)
                body = json.dumps(decoded).encode()
        else:
            body = data.draw(raw_bodies)
        content_type = data.draw(content_types)
        response = fuzz_client.generic(
            method, f"{path}?{query}" if query else path, data=body, content_type=content_type
        )
        statuses[response.status_code] += 1
        where = f"{method} {path[:120]} [{content_type}] -> {response.status_code}"
        if response.status_code >= 500 and not _deliberate_501(response):
            failures.append(f"{where}: {response.content[:300]!r}")
        elif response.status_code >= 400:
            try:
                envelope = json.loads(response.content)
            except ValueError:
                envelope = {}
            ok = (
                isinstance(envelope.get("error"), str)
                and isinstance(envelope.get("code"), str)
                and envelope.get("request_id") == response["X-Request-Id"]
            )
            if not ok:
                failures.append(f"{where}: not an envelope: {response.content[:200]!r}")

    one_request()
    total = sum(statuses.values())
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "api-fuzz-counts.json").write_text(
        json.dumps({"requests": total, "by_status": dict(sorted(statuses.items()))}, indent=1)
    )
    assert total >= EXAMPLES
    assert not failures, f"{len(failures)} of {total} answers broke the rules:\n" + "\n".join(
        failures[:30]
    )


@pytest.fixture
def settings_for_fuzz(settings):
    # Fuzzing is many requests from one key; the limit is tested on its own elsewhere.
    settings.API_RATE_LIMIT_PER_MINUTE = 10**6
    settings.API_RATE_BURST = 10**6
    settings.API_JSON_MAX_BYTES = 64 * 1024
    return settings


def _deliberate_501(response) -> bool:
    """A capability this server refuses on purpose (attach a volume to a running sandbox):
    501 `not_implemented` in the envelope, saying what works instead, is an answer, not a
    server error."""
    if response.status_code != 501:
        return False
    try:
        return json.loads(response.content).get("code") == "not_implemented"
    except ValueError:
        return False
