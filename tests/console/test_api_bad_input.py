"""Each cause of a 5xx found by fuzzing /v1 now answers a 4xx in the envelope, and
nothing is left half-written (tests/console/test_api_fuzz.py searches for new ones)."""

from __future__ import annotations

import json
import socket

import pytest

from console.models import ApiKey, Sandbox

pytestmark = pytest.mark.django_db


def _post(api, path: str, body: str | bytes, content_type: str = "application/json"):
    return api.generic("POST", path, data=body, content_type=content_type)


def assert_refused(response, status: int = 400, code: str = "invalid_request") -> dict:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert body["code"] == code and body["request_id"] == response["X-Request-Id"]
    return body


def test_deeply_nested_json_is_refused(api):
    for depth in (40, 10_000):
        body = '{"metadata": ' + "[" * depth + "]" * depth + "}"
        assert_refused(_post(api, "/v1/sandboxes", body))
    assert not Sandbox.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        '{"timeout": 1e400}',
        '{"timeout": NaN}',
        '{"timeout": Infinity}',
        '{"timeout": -Infinity}',
        '{"timeout": 123456789012345678901234567890}',
        '{"metadata": {"a": "x\\u0000y"}}',
        '{"metadata": {"\\u0000": "1"}}',
        '{"metadata": {"a": "\\ud800"}}',
        '{"envs": {"A\\u0000B": "1"}}',
        '{"envs": {"A=B": "1"}}',
        '{"envs": {"": "1"}}',
        '{"envs": {"A": {"nested": 1}}}',
        '{"cwd": "/workspace/' + "a" * 300 + '"}',
        '{"cwd": "/workspace/' + "a/" * 2100 + '"}',
    ],
)
def test_create_refuses_bad_values_and_creates_nothing(api, body):
    assert_refused(_post(api, "/v1/sandboxes", body))
    assert not Sandbox.objects.exists()


def test_nul_in_ids_and_queries_is_refused(api):
    assert_refused(api.get("/v1/sandboxes/sb_%00x"))
    assert_refused(api.get("/v1/sandboxes", {"state": "running\x00"}))
    assert_refused(api.get("/v1/sandboxes", {"metadata": "team=a\x00"}))
    assert_refused(api.get("/v1/sandboxes/" + "x" * 5000))


def test_lone_surrogates_in_key_names_and_file_paths_are_refused(api, project):
    before = ApiKey.objects.count()
    assert_refused(_post(api, "/v1/keys", '{"name": "bad \\udc80 name"}'))
    assert ApiKey.objects.count() == before
    sandbox = Sandbox.objects.create(project=project, status="running")
    url = f"/v1/sandboxes/{sandbox.public_id}/files/write"
    assert_refused(_post(api, url, '{"path": "/workspace/\\ud800", "content": "x"}'))
    assert_refused(_post(api, url, '{"path": "/workspace/a", "content": "\\udfff"}'))


def test_dict_where_a_list_is_expected(api, project):
    sandbox = Sandbox.objects.create(project=project, status="running")
    url = f"/v1/sandboxes/{sandbox.public_id}/ports/8080/preview-proxy-target"
    assert_refused(_post(api, url, '{"transports": {"http": true}}'))
    assert_refused(_post(api, url, '{"transports": [{"http": true}]}'))


def test_bodies_past_the_limit_are_413_before_parsing(api, settings):
    settings.API_JSON_MAX_BYTES = 1024 * 1024
    huge = b'{"metadata": {"a": "' + b"x" * (50 * 1024 * 1024) + b'"}}'
    body = assert_refused(_post(api, "/v1/sandboxes", huge), 413, "payload_too_large")
    assert body["details"]["limit_bytes"] == 1024 * 1024
    assert not Sandbox.objects.exists()


def test_json_routes_refuse_other_content_types(api):
    response = _post(api, "/v1/sandboxes", '{"template": "base"}', content_type="text/plain")
    assert_refused(response, 415, "unsupported_media_type")
    form = _post(api, "/v1/sandboxes", "template=base", "application/x-www-form-urlencoded")
    assert_refused(form, 415, "unsupported_media_type")
    assert not Sandbox.objects.exists()


def test_env_names_are_checked_at_create_and_exec_still_works(api, runtime):
    assert_refused(_post(api, "/v1/sandboxes", '{"envs": {"BAD=NAME": "1"}}'))
    created = _post(api, "/v1/sandboxes", '{"envs": {"GOOD": "1"}}').json()
    url = f"/v1/sandboxes/{created['id']}/exec"
    assert_refused(_post(api, url, '{"command": "env", "envs": {"X\\u0000": "1"}}'))
    ran = _post(api, url, '{"command": "echo $GOOD", "shell": true}').json()
    assert ran["stdout"] == "1\n" and ran["exit_code"] == 0


def test_exec_of_a_missing_binary_is_a_client_error(api, runtime):
    created = _post(api, "/v1/sandboxes", "{}").json()
    url = f"/v1/sandboxes/{created['id']}/exec"
    body = assert_refused(
        _post(api, url, '{"command": "/no/such/binary"}'), 400, "command_not_found"
    )
    assert "/no/such/binary" in body["error"]
    long_cwd = json.dumps({"command": "true", "cwd": "/workspace/" + "d" * 300})
    assert_refused(_post(api, url, long_cwd))


@pytest.mark.cli
def test_request_lines_over_16_kib_get_an_answer(live):
    """Whichever server runs (`serve` picks uvicorn or daphne), a 20 KB request line or
    header is answered with a 4xx in the envelope, never dropped without a word."""
    for line in (
        f"GET /v1/sandboxes?q={'a' * 20_000} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        f"GET /v1/sandboxes HTTP/1.1\r\nHost: localhost\r\nX-Big: {'b' * 20_000}\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
            sock.sendall(line.encode())
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert 400 <= status < 500, head
        assert isinstance(json.loads(body)["code"], str)


def test_daphne_answers_overlong_lines_in_the_envelope():
    from console.management.commands.serve import answer_overlong_line

    class Transport:
        written = b""
        lost = False

        def write(self, data: bytes) -> None:
            self.written += data

        def loseConnection(self) -> None:
            self.lost = True

    class Channel:
        MAX_LENGTH = 16384
        _HTTPChannel__first_line = 1
        transport = Transport()

    answer_overlong_line(Channel, b"x")
    head, _, body = Channel.transport.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 ") and Channel.transport.lost
    assert json.loads(body)["code"] == "request_line_too_long"
