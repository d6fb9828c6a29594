"""Console sandbox pages on real local sandboxes (no network namespace: no ports needed).

Covers each view's happy path, another project's sandbox (404), a viewer refused
every action (403), htmx fragments against full pages, CSRF, and the exec WebSocket
with a real process.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console.actor import Actor
from console.models import LifecycleEvent, Sandbox, SandboxStatus, Snapshot
from console.runtime import get_driver
from console.runtime.base import ExecRequest
from console.sandboxes import service as sandboxes

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def sandbox(runtime, project, member):
    made, _token = sandboxes.create_sandbox(
        project, actor=Actor.person(member), metadata={"team": "eval"}, envs={"GREETING": "hi"}
    )
    return made


def url(name, project, **kwargs):
    return reverse(
        name, kwargs={"team_slug": project.team.slug, "project_slug": project.slug, **kwargs}
    )


def sb_url(name, sandbox, **kwargs):
    return url(name, sandbox.project, sandbox_id=sandbox.public_id, **kwargs)


def row(project, **fields):
    """A sandbox row without a runtime behind it, for list pages."""
    return Sandbox.objects.create(project=project, **fields)


def run(sandbox, command, timeout=10):
    return sandboxes.run_command(sandbox, ExecRequest(command, shell=True, timeout_secs=timeout))


# --- list and filters ------------------------------------------------------------------


def test_list_shows_state_template_timeout_and_metadata(viewer_client, project):
    running = row(
        project,
        status=SandboxStatus.RUNNING,
        metadata={"team": "eval"},
        timeout_at=timezone.now() + timedelta(minutes=5),
    )
    row(project, status=SandboxStatus.DESTROYED, template="other")
    response = viewer_client.get(url("sandbox-list", project))
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" in body and running.public_id in body
    assert "Running" in body and "team=eval" in body and "then destroy" in body
    assert "New sandbox" not in body  # viewers cannot create


def test_list_filters_by_state_template_and_metadata(member_client, project):
    paused = row(project, status=SandboxStatus.PAUSED, metadata={"team": "eval", "x": "1"})
    running = row(project, status=SandboxStatus.RUNNING, metadata={"team": "web"})
    other = row(project, status=SandboxStatus.RUNNING, template="gpu")
    list_url = url("sandbox-list", project)

    def ids(**query):
        body = member_client.get(list_url, query).content.decode()
        return {s.public_id for s in (paused, running, other) if s.public_id in body}

    assert ids(state="paused") == {paused.public_id}
    assert ids(template="gpu") == {other.public_id}
    assert ids(metadata="team=eval") == {paused.public_id}
    assert ids(metadata="team=eval, x=1") == {paused.public_id}
    assert ids(metadata="team=web", state="running") == {running.public_id}
    assert ids(metadata="nonsense") == set()
    assert ids(metadata="team__contains=e") == set()  # no ORM lookups through keys


def test_list_leaves_destroyed_out_unless_asked(member_client, project):
    gone = row(project, status=SandboxStatus.DESTROYED)
    assert gone.public_id not in member_client.get(url("sandbox-list", project)).content.decode()
    for state in ("all", "destroyed"):
        body = member_client.get(url("sandbox-list", project), {"state": state}).content.decode()
        assert gone.public_id in body


def test_list_paginates_and_has_an_empty_state(member_client, project):
    empty = member_client.get(url("sandbox-list", project)).content.decode()
    assert "No sandboxes yet" in empty and "New sandbox" in empty
    for _ in range(23):
        row(project, status=SandboxStatus.DESTROYED)
    first = member_client.get(url("sandbox-list", project), {"state": "all"}).content.decode()
    assert first.count("<tr") == 21  # header + 20
    older = re.search(r'rel="next" href="\?state=all&amp;after=([\w-]+)"', first)
    assert older, "an Older link that keeps the filter"
    second = member_client.get(url("sandbox-list", project), {"state": "all", "after": older[1]})
    second = second.content.decode()
    assert second.count("<tr") == 4 and 'rel="next"' not in second


def test_list_htmx_gets_only_the_table(member_client, project):
    row(project, status=SandboxStatus.RUNNING)
    fragment = member_client.get(url("sandbox-list", project), {"state": "running"}, **HTMX)
    body = fragment.content.decode()
    assert body.lstrip().startswith('<section id="sandbox-table"') and "<html" not in body
    assert "HX-Request" in fragment["Vary"]


def test_list_does_not_show_another_projects_sandboxes(owner_client, project, other_project):
    theirs = row(other_project, status=SandboxStatus.RUNNING)
    assert theirs.public_id not in owner_client.get(url("sandbox-list", project)).content.decode()
    assert owner_client.get(url("sandbox-list", other_project)).status_code == 404


# --- create ----------------------------------------------------------------------------


def test_create_from_the_form(runtime, member_client, project):
    form = {
        "template": "base",
        "envs": "GREETING=hello\n# comment\nEMPTY=",
        "metadata": "team=eval",
        "timeout": "120",
        "on_timeout": "pause",
        "auto_resume": "on",
    }
    response = member_client.post(url("sandbox-create", project), form)
    made = Sandbox.objects.get(project=project)
    assert response.status_code == 302
    assert response["Location"] == sb_url("sandbox-detail", made)
    assert made.status == SandboxStatus.RUNNING
    assert made.envs == {"GREETING": "hello", "EMPTY": ""}
    assert made.metadata == {"team": "eval"}
    assert made.timeout_ms == 120_000 and made.timeout_action == "hibernate" and made.auto_resume
    assert run(made, "echo $GREETING").stdout == "hello\n"
    assert LifecycleEvent.objects.filter(sandbox_id=made.public_id, operation="create").exists()


def test_create_with_htmx_redirects_the_client(runtime, member_client, project):
    form = {"template": "base", "timeout": "60", "on_timeout": "destroy"}
    response = member_client.post(url("sandbox-create", project), form, **HTMX)
    made = Sandbox.objects.get(project=project)
    assert response.status_code == 200 and response["HX-Redirect"] == sb_url("sandbox-detail", made)


def test_create_refusals_rerender_the_form(runtime, member_client, project):
    bad_env = {
        "template": "base",
        "envs": "no equals sign",
        "timeout": "60",
        "on_timeout": "destroy",
    }
    response = member_client.post(url("sandbox-create", project), bad_env, **HTMX)
    assert response.status_code == 200 and "write it as KEY=value" in response.content.decode()
    assert 'id="sandbox-form"' in response.content.decode()
    unknown = {"template": "nope", "timeout": "60", "on_timeout": "destroy"}
    response = member_client.post(url("sandbox-create", project), unknown)
    assert "Template &#x27;nope&#x27; not found" in response.content.decode()
    assert not Sandbox.objects.filter(project=project).exists()


def test_create_respects_the_running_quota(runtime, member_client, project, settings):
    settings.MAX_RUNNING_SANDBOXES = 1
    form = {"template": "base", "timeout": "60", "on_timeout": "destroy"}
    assert member_client.post(url("sandbox-create", project), form).status_code == 302
    response = member_client.post(url("sandbox-create", project), form)
    assert response.status_code == 200 and "its limit" in response.content.decode()
    assert Sandbox.objects.filter(project=project).count() == 1


# --- detail, live state and actions ------------------------------------------------------


def test_detail_page_shows_every_section(viewer_client, sandbox):
    run(sandbox, "echo hi > notes.txt")
    body = viewer_client.get(sb_url("sandbox-detail", sandbox)).content.decode()
    for part in (
        'id="sandbox-state"',
        'hx-trigger="sandbox-changed from:body"',
        f'data-live-socket="/t/acme/p/web/sandboxes/{sandbox.public_id}/live/ws"',
        'id="process-table"',
        'id="file-browser"',
        "notes.txt",
        'id="snapshot-table"',
        'id="event-list"',
        'id="metrics-chart"',
        "team=eval",
    ):
        assert part in body, part
    assert 'id="exec-form"' not in body and 'id="pause-button"' not in body  # viewer


def test_detail_for_a_member_has_actions_and_the_exec_box(member_client, sandbox):
    body = member_client.get(sb_url("sandbox-detail", sandbox)).content.decode()
    assert 'id="exec-form"' in body and 'id="pause-button"' in body and 'id="kill-button"' in body
    assert f"/sandboxes/{sandbox.public_id}/exec/ws" in body


def test_state_fragment_follows_the_sandbox_and_never_polls(member_client, member, sandbox):
    state_url = sb_url("sandbox-state", sandbox)
    live = member_client.get(state_url, **HTMX)
    assert live.status_code == 200 and "Running" in live.content.decode()
    assert "<html" not in live.content.decode() and "every " not in live.content.decode()
    sandboxes.destroy_sandbox(sandbox, actor=Actor.person(member))
    final = member_client.get(state_url, **HTMX)
    assert final.status_code == 200 and "Destroyed" in final.content.decode()
    # Without htmx the state URL is the detail page.
    assert member_client.get(state_url).status_code == 302


def test_snapshots_and_events_page_on_the_sandbox_page(viewer_client, sandbox):
    from console.models import Snapshot

    Snapshot.objects.bulk_create(
        Snapshot(project=sandbox.project, sandbox=sandbox, sandbox_public_id=sandbox.public_id)
        for _ in range(13)
    )
    body = viewer_client.get(sb_url("sandbox-detail", sandbox)).content.decode()
    assert body.count("Delete snapshot") == 0 and body.count("<code>snap_") == 10
    older = re.search(r'href="\?snapshots_after=([\w-]+)#snapshot-table"', body)
    assert older, "a link to older snapshots"
    rest = viewer_client.get(
        sb_url("snapshot-list", sandbox), {"snapshots_after": older[1]}, **HTMX
    ).content.decode()
    assert rest.count("<code>snap_") == 3 and "Older snapshots" not in rest


def test_pause_and_resume_with_htmx(member_client, sandbox):
    paused = member_client.post(sb_url("sandbox-pause", sandbox), **HTMX)
    body = paused.content.decode()
    assert paused.status_code == 200 and "Paused" in body and 'id="resume-button"' in body
    assert "sandbox-changed" in paused["HX-Trigger"] and "paused." in paused["HX-Trigger"]
    sandbox.refresh_from_db()
    assert sandbox.status == SandboxStatus.PAUSED
    resumed = member_client.post(sb_url("sandbox-resume", sandbox))
    assert resumed.status_code == 302
    sandbox.refresh_from_db()
    assert sandbox.status == SandboxStatus.RUNNING
    assert run(sandbox, "echo back").stdout == "back\n"


def test_kill_asks_first_without_javascript(member_client, sandbox):
    confirm = member_client.get(sb_url("sandbox-delete", sandbox))
    assert confirm.status_code == 200 and "Kill sandbox" in confirm.content.decode()
    sandbox.refresh_from_db()
    assert sandbox.status == SandboxStatus.RUNNING
    killed = member_client.post(sb_url("sandbox-delete", sandbox), **HTMX)
    assert "Destroyed" in killed.content.decode()
    sandbox.refresh_from_db()
    assert sandbox.status == SandboxStatus.DESTROYED
    assert not get_driver().exists(sandbox.public_id)


def test_extend_timeout(member_client, sandbox):
    response = member_client.post(sb_url("sandbox-timeout", sandbox), {"timeout": "3600"}, **HTMX)
    assert response.status_code == 200
    sandbox.refresh_from_db()
    assert sandbox.timeout_ms == 3_600_000
    assert sandbox.timeout_at > timezone.now() + timedelta(minutes=59)
    refused = member_client.post(sb_url("sandbox-timeout", sandbox), {"timeout": "0"}, **HTMX)
    assert "greater than or equal to 1" in refused["HX-Trigger"]


def test_action_on_a_paused_sandbox_says_why(member_client, member, sandbox):
    sandboxes.pause_sandbox(sandbox, actor=Actor.person(member))
    response = member_client.post(sb_url("sandbox-exec", sandbox), {"command": "echo hi"})
    assert "is paused" in response.content.decode()


def test_metrics_json(viewer_client, sandbox):
    body = viewer_client.get(sb_url("sandbox-metrics", sandbox)).json()
    assert body["status"] == "running"
    assert {"cpu_percent", "mem_used_bytes", "mem_total_bytes"} <= set(body["sample"])


# --- processes and exec ------------------------------------------------------------------


def test_process_table_and_kill(member_client, sandbox):
    pid = sandboxes.start_process(sandbox, ExecRequest("sleep 300", shell=True, timeout_secs=None))
    table = member_client.get(sb_url("sandbox-processes", sandbox), **HTMX).content.decode()
    assert table.lstrip().startswith('<section id="process-table"') and "sleep 300" in table
    killed = member_client.post(sb_url("process-kill", sandbox, pid=pid), **HTMX)
    assert killed.status_code == 200
    assert get_driver().wait_process(sandbox.public_id, pid, 5) is not None
    running = [p for p in get_driver().processes(sandbox.public_id) if p.running]
    assert pid not in {p.pid for p in running}


def test_exec_without_javascript_shows_the_output(member_client, sandbox):
    response = member_client.post(
        sb_url("sandbox-exec", sandbox), {"command": "echo $GREETING; echo oops >&2"}
    )
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body
    assert "hi\n" in body and "oops" in body and "[exit 0]" in body


# --- files -------------------------------------------------------------------------------


def test_upload_list_view_and_download(member_client, sandbox):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("hello.txt", b"hello <world>\n", content_type="text/plain")
    response = member_client.post(
        sb_url("sandbox-file-upload", sandbox) + "?dir=/workspace", {"file": upload}, **HTMX
    )
    assert response.status_code == 200 and "hello.txt" in response.content.decode()
    assert run(sandbox, "cat hello.txt").stdout == "hello <world>\n"
    view = member_client.get(
        sb_url("sandbox-files", sandbox), {"path": "/workspace/hello.txt"}, **HTMX
    )
    assert "hello &lt;world&gt;" in view.content.decode()
    download = member_client.get(
        sb_url("sandbox-file-download", sandbox), {"path": "/workspace/hello.txt"}
    )
    assert b"".join(download.streaming_content) == b"hello <world>\n"
    assert "attachment" in download["Content-Disposition"]


def test_file_browser_walks_folders_and_stays_in_the_sandbox(viewer_client, sandbox):
    run(sandbox, "mkdir -p src/app && echo x > src/app/main.py")
    body = viewer_client.get(
        sb_url("sandbox-files", sandbox), {"path": "/workspace/src"}, **HTMX
    ).content.decode()
    assert "app/" in body and "main.py" not in body
    # `..` stops at the sandbox's own root; /etc/passwd is the sandbox's, never the host's.
    download = viewer_client.get(
        sb_url("sandbox-file-download", sandbox), {"path": "/workspace/../../etc/passwd"}, **HTMX
    )
    assert download.status_code == 200
    content = b"".join(download.streaming_content)
    assert b"user:x:1000:1000:" in content
    assert content != open("/etc/passwd", "rb").read()


def test_upload_over_the_limit_is_refused(member_client, sandbox, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.MAX_FILE_BYTES = 1024
    big = SimpleUploadedFile("big.bin", b"x" * 200_000)
    response = member_client.post(sb_url("sandbox-file-upload", sandbox), {"file": big}, **HTMX)
    assert "upload limit" in response["HX-Trigger"]
    slightly = SimpleUploadedFile("slightly.bin", b"x" * 2048)
    response = member_client.post(
        sb_url("sandbox-file-upload", sandbox), {"file": slightly}, **HTMX
    )
    assert "file limit" in response["HX-Trigger"]
    assert run(sandbox, "ls").stdout == ""


# --- snapshots ---------------------------------------------------------------------------


def test_snapshot_create_and_delete(member_client, sandbox):
    created = member_client.post(sb_url("snapshot-create", sandbox), **HTMX)
    snapshot = Snapshot.objects.get(sandbox_public_id=sandbox.public_id)
    assert snapshot.public_id in created.content.decode()
    confirm = member_client.get(sb_url("snapshot-delete", sandbox, snapshot_id=snapshot.public_id))
    assert "Delete snapshot" in confirm.content.decode()
    deleted = member_client.post(sb_url("snapshot-delete", sandbox, snapshot_id=snapshot.public_id))
    assert deleted.status_code == 302 and not Snapshot.objects.filter(pk=snapshot.pk).exists()


def test_events_fragment(viewer_client, member, sandbox):
    sandboxes.set_timeout(sandbox, 600_000, actor=Actor.person(member))
    body = viewer_client.get(sb_url("sandbox-events", sandbox), **HTMX).content.decode()
    assert body.lstrip().startswith('<section id="event-list"')
    assert "Timeout Updated" in body and "Create" in body


# --- access ------------------------------------------------------------------------------


ACTIONS = [
    ("sandbox-pause", {}),
    ("sandbox-resume", {}),
    ("sandbox-delete", {}),
    ("sandbox-timeout", {}),
    ("snapshot-create", {}),
    ("sandbox-exec", {}),
    ("sandbox-file-upload", {}),
    ("process-kill", {"pid": 1}),
]


@pytest.mark.parametrize(("name", "extra"), ACTIONS)
def test_viewer_is_refused_every_action(viewer_client, sandbox, name, extra):
    assert viewer_client.post(sb_url(name, sandbox, **extra), {"timeout": "60"}).status_code == 403
    sandbox.refresh_from_db()
    assert sandbox.status == SandboxStatus.RUNNING


def test_viewer_cannot_open_the_create_form(viewer_client, project):
    assert viewer_client.get(url("sandbox-create", project)).status_code == 403


READS = ["sandbox-detail", "sandbox-state", "sandbox-metrics", "sandbox-events", "snapshot-list",
         "sandbox-processes", "sandbox-files", "sandbox-file-download"]  # fmt: skip


@pytest.mark.parametrize("name", READS + [name for name, _ in ACTIONS])
def test_another_projects_sandbox_is_404(
    owner_client, outsider_client, project, other_project, runtime, name
):
    theirs = row(other_project, status=SandboxStatus.RUNNING)
    extra = {"pid": 1} if name == "process-kill" else {}
    # Through our own project's URLs, and through theirs (we are not a member).
    mine = url(name, project, sandbox_id=theirs.public_id, **extra)
    method = owner_client.get if name in READS else owner_client.post
    assert method(mine).status_code == 404
    assert method(sb_url(name, theirs, **extra)).status_code == 404


def test_csrf_is_enforced(runtime, owner, project):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    sandbox = row(project, status=SandboxStatus.RUNNING)
    assert client.post(sb_url("sandbox-pause", sandbox)).status_code == 403
    form = {"template": "base", "timeout": "60", "on_timeout": "destroy"}
    assert client.post(url("sandbox-create", project), form).status_code == 403
    assert not Sandbox.objects.exclude(pk=sandbox.pk).exists()


# --- the exec WebSocket --------------------------------------------------------------------


@pytest.fixture
async def ws_runtime(runtime):
    yield
    # The consumer's queries ran in asgiref's shared thread; with CONN_MAX_AGE its
    # connection would outlive the test and block dropping the PostgreSQL test database.
    await database_sync_to_async(connections.close_all)()


async def _socket(user, project, sandbox_id, origin=None):
    from django.conf import settings

    from console.asgi import application

    client = Client()
    await database_sync_to_async(client.force_login)(user)
    path = f"/t/{project.team.slug}/p/{project.slug}/sandboxes/{sandbox_id}/exec/ws"
    headers = [
        (b"host", b"localhost"),
        (b"origin", (origin or settings.SITE_URL).encode()),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]
    return WebsocketCommunicator(application, path, headers=headers)


async def _frames_until_exit(communicator, limit=50):
    frames = []
    for _ in range(limit):
        frame = await communicator.receive_json_from(timeout=10)
        frames.append(frame)
        if frame["type"] in ("exec_exit", "error"):
            break
    return frames


@pytest.mark.django_db(transaction=True)
async def test_exec_socket_streams_a_real_process(ws_runtime, project, member):
    sandbox = await database_sync_to_async(
        lambda: sandboxes.create_sandbox(project, actor=Actor.person(member))[0]
    )()
    communicator = await _socket(member, project, sandbox.public_id)
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to(
        {"type": "exec_start", "command": "echo hello; sleep 0.3; echo done >&2; exit 3"}
    )
    frames = await _frames_until_exit(communicator)
    assert frames[0]["type"] == "exec_started" and isinstance(frames[0]["pid"], int)
    out = "".join(f["data"] for f in frames if f["type"] == "exec_stdout")
    err = "".join(f["data"] for f in frames if f["type"] == "exec_stderr")
    assert out == "hello\n" and err == "done\n"
    assert frames[-1] == {"type": "exec_exit", "exit_code": 3}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_exec_socket_output_arrives_while_the_process_runs(ws_runtime, project, member):
    sandbox = await database_sync_to_async(
        lambda: sandboxes.create_sandbox(project, actor=Actor.person(member))[0]
    )()
    communicator = await _socket(member, project, sandbox.public_id)
    await communicator.connect()
    await communicator.send_json_to({"type": "exec_start", "command": "echo first; sleep 30"})
    assert (await communicator.receive_json_from(timeout=10))["type"] == "exec_started"
    first = await communicator.receive_json_from(timeout=5)
    assert first == {"type": "exec_stdout", "data": "first\n"}  # long before the process ends
    await communicator.send_json_to({"type": "exec_kill"})
    frames = await _frames_until_exit(communicator)
    assert frames[-1]["type"] == "exec_exit"
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_exec_socket_disconnect_kills_the_process(ws_runtime, project, member):
    sandbox = await database_sync_to_async(
        lambda: sandboxes.create_sandbox(project, actor=Actor.person(member))[0]
    )()
    communicator = await _socket(member, project, sandbox.public_id)
    await communicator.connect()
    await communicator.send_json_to({"type": "exec_start", "command": "sleep 60"})
    pid = (await communicator.receive_json_from(timeout=10))["pid"]
    await communicator.disconnect()
    code = await asyncio.to_thread(get_driver().wait_process, sandbox.public_id, pid, 5)
    assert code is not None


@pytest.mark.django_db(transaction=True)
async def test_exec_socket_refuses_viewers_and_other_projects(
    ws_runtime, project, other_project, viewer, member
):
    sandbox = await database_sync_to_async(
        lambda: sandboxes.create_sandbox(project, actor=Actor.person(member))[0]
    )()
    refused = await _socket(viewer, project, sandbox.public_id)
    connected, _ = await refused.connect()
    assert not connected
    theirs = await database_sync_to_async(row)(other_project, status=SandboxStatus.RUNNING)
    elsewhere = await _socket(member, project, theirs.public_id)
    connected, _ = await elsewhere.connect()
    assert not connected


@pytest.mark.django_db(transaction=True)
async def test_exec_socket_reports_a_paused_sandbox(ws_runtime, project, member):
    sandbox = await database_sync_to_async(
        lambda: sandboxes.create_sandbox(project, actor=Actor.person(member))[0]
    )()
    await database_sync_to_async(sandboxes.pause_sandbox)(sandbox, actor=Actor.person(member))
    communicator = await _socket(member, project, sandbox.public_id)
    await communicator.connect()
    await communicator.send_json_to({"type": "exec_start", "command": "echo hi"})
    frame = await communicator.receive_json_from(timeout=10)
    assert frame["type"] == "error" and "paused" in frame["message"]
    await communicator.disconnect()
