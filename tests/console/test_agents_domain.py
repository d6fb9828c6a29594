"""Agent deployment pieces without a server: the bundle digest recomputed from the client's
own archive, the config check's refusals, the artifact cache key, log pages and masking,
and which unfinished work start-up fails."""

from __future__ import annotations

import io
import os
import socket
import tarfile

import pytest
from nullspace._agent_bundle import build_agent_bundle_archive, build_agent_bundle_manifest
from nullspace._agent_config import load_agent_config
from nullspace.agent_deployments import _config_payload

from console.agents import artifacts, bundles, jobs, logs
from console.agents import config as agent_config
from console.errors import DomainError
from console.models import AgentDeployment, AgentRun, AgentVersion

CONFIG = """name = "digest-check"
mode = "job"
install = "pip install -r requirements.txt"
entrypoint = "python3 main.py"

[env]
required = ["API_TOKEN"]

[outputs]
paths = ["out"]
"""


@pytest.fixture
def client_bundle(tmp_path):
    """What `nullspace agent deploy` sends: the config payload, manifest and tar bytes."""
    (tmp_path / "nullspace.agent.toml").write_text(CONFIG)
    (tmp_path / "main.py").write_text("print('hi')\n")
    (tmp_path / "requirements.txt").write_text("requests==2.32.0\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "util.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "link.py").symlink_to("util.py")
    (tmp_path / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "pkg" / "run.sh").chmod(0o755)
    config = load_agent_config(tmp_path / "nullspace.agent.toml")
    manifest = build_agent_bundle_manifest(tmp_path, config)
    return (
        _config_payload(config),
        manifest.to_dict(),
        build_agent_bundle_archive(tmp_path, manifest),
    )


def _receive(tmp_path, settings, payload: bytes, manifest: dict, config: dict):
    settings.DATA_DIR = tmp_path / "data"
    canonical = agent_config.canonical(config, manifest)
    return bundles.receive(
        io.BytesIO(payload),
        length=len(payload),
        version_public_id="adver_test",
        expected_digest=manifest["bundle_digest"],
        cfg_digest=bundles.config_digest(canonical),
    )


def test_server_digests_match_the_clients(client_bundle, tmp_path, settings):
    config, manifest, archive = client_bundle
    canonical = agent_config.canonical(
        agent_config.checked_config(config, deployment_mode="job"), manifest
    )
    assert bundles.config_digest(canonical) == manifest["config_digest"]
    stored = _receive(tmp_path, settings, archive, manifest, config)
    assert stored.path.read_bytes() == archive
    assert stored.file_count == manifest["file_count"] == 6


def test_a_changed_file_is_refused_and_nothing_kept(client_bundle, tmp_path, settings):
    config, manifest, archive = client_bundle
    tampered = archive.replace(b"X = 1", b"X = 2")
    with pytest.raises(DomainError) as refused:
        _receive(tmp_path, settings, tampered, manifest, config)
    assert refused.value.code == "bundle_digest_mismatch"
    assert list((tmp_path / "data" / "agents" / "bundles").iterdir()) == []


def test_a_hard_link_or_escape_is_refused(client_bundle, tmp_path, settings):
    config, manifest, _archive = client_bundle
    for name, kind in (("../evil", tarfile.REGTYPE), ("link", tarfile.LNKTYPE)):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "main.py" if kind == tarfile.LNKTYPE else ""
            tar.addfile(info, io.BytesIO(b""))
        with pytest.raises(DomainError) as refused:
            _receive(tmp_path, settings, buffer.getvalue(), manifest, config)
        assert refused.value.code == "invalid_request"


def test_an_oversized_bundle_is_refused(client_bundle, tmp_path, settings):
    config, manifest, archive = client_bundle
    settings.AGENT_MAX_BUNDLE_BYTES = 1024
    with pytest.raises(DomainError) as refused:
        _receive(tmp_path, settings, archive, manifest, config)
    assert refused.value.code == "payload_too_large"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "triggered"}, "reserved for future Agent Deployment models"),
        ({"entrypoint": None}, "config.entrypoint is required"),
        ({"workdir": "/etc"}, "under /workspace"),
        ({"env": {"required": ["TOKEN=abc"]}}, "names, not values"),
        ({"env": {"values": {"A": "b"}}}, "names only"),
        ({"outputs": {"paths": ["a/../b"]}}, "'..' segment"),
        ({"resources": {"timeout_seconds": 0}}, "timeout_seconds must be an integer"),
        ({"surprise": 1}, "unknown key(s) in config: surprise"),
        ({"template": "gpu"}, "Template 'gpu' not found"),
    ],
)
def test_config_refusals(change, message):
    config = {"mode": "job", "entrypoint": "python3 main.py", **change}
    with pytest.raises(DomainError) as refused:
        agent_config.checked_config(config, deployment_mode="job")
    assert message in refused.value.message


@pytest.mark.parametrize(
    ("permissions", "code"),
    [
        ({"volumes": True}, "not_implemented"),
        ({"desktop": True}, "not_implemented"),
        ({"allow_out": ["not-a-cidr"]}, "invalid_request"),
        ({"deny_out": ["fd00::/8"]}, "invalid_request"),
        ({"deny_out": "10.0.0.0/8"}, "invalid_request"),
    ],
)
def test_flags_we_cannot_honour_are_refused(permissions, code):
    config = {"mode": "job", "entrypoint": "x", "permissions": permissions}
    with pytest.raises(DomainError) as refused:
        agent_config.checked_config(config, deployment_mode="job")
    assert refused.value.code == code
    if code == "invalid_request":
        assert "config.permissions." in refused.value.message


def test_egress_rules_become_the_sandboxs_network():
    permissions = {"allow_out": ["10.1.2.0/24"], "deny_out": ["10.1.2.3/32"]}
    config = agent_config.checked_config(
        {"mode": "job", "entrypoint": "x", "permissions": permissions}, deployment_mode="job"
    )
    assert agent_config.network(config) == permissions
    bare = agent_config.checked_config({"mode": "job", "entrypoint": "x"}, deployment_mode="job")
    assert agent_config.network(bare) == {}


def test_service_configs_need_a_valid_port_and_the_deployments_mode():
    base = {"mode": "service", "entrypoint": "x"}
    for port in (None, 22, 70000):
        with pytest.raises(DomainError):
            agent_config.checked_config(
                {**base, "service": {"port": port}}, deployment_mode="service"
            )
    with pytest.raises(DomainError) as refused:
        agent_config.checked_config({**base, "service": {"port": 8080}}, deployment_mode="job")
    assert refused.value.code == "conflict"
    ok = agent_config.checked_config(
        {**base, "service": {"port": 8080, "readiness": {"type": "http", "path": "/up"}}},
        deployment_mode="service",
    )
    assert agent_config.readiness(ok) == {"type": "http", "path": "/up", "timeout_seconds": 60}


def test_cache_key_follows_install_inputs_only():
    config = {"template": "base", "install": "pip install -r requirements.txt"}

    def manifest(req_digest: str, main_digest: str) -> dict:
        entries = [
            {"path": "requirements.txt", "kind": "file", "included": True, "digest": req_digest},
            {"path": "main.py", "kind": "file", "included": True, "digest": main_digest},
        ]
        return {"entries": entries}

    key = artifacts.cache_key(config, manifest("r1", "m1"))
    assert artifacts.cache_key(config, manifest("r1", "m2")) == key
    assert artifacts.cache_key(config, manifest("r2", "m1")) != key
    assert artifacts.cache_key({**config, "install": "make deps"}, manifest("r1", "m1")) != key


@pytest.fixture
def run(db, project):
    deployment = AgentDeployment.objects.create(project=project, name="j", mode="job")
    version = AgentVersion.objects.create(
        deployment=deployment, number=1, bundle_digest="c" * 64, config={"entrypoint": "x"}
    )
    return AgentRun.objects.create(
        deployment=deployment, version=version, status="running", runner=f"{socket.gethostname()}:1"
    )


def test_output_lines_are_masked_split_and_paged(run):
    sink = logs.LineSink(run, ["hunter22", "no"], 42)
    sink.feed("stdout", "password is hunter22\npart")
    sink.feed("stderr", "oops no\n")
    sink.feed("stdout", "ial line\n")
    sink.close()
    page = logs.page(run, offset=0, limit=2, cursor=None, tail=None)
    assert [e["message"] for e in page["events"]] == ["password is [redacted]", "oops no"]
    assert page["has_more"] is True and page["events"][1]["level"] == "error"
    rest = logs.page(run, offset=0, limit=10, cursor=page["next_cursor"], tail=None)
    assert [e["message"] for e in rest["events"]] == ["partial line"]
    assert (
        logs.page(run, offset=0, limit=10, cursor=None, tail=1)["events"][0]["message"]
        == "partial line"
    )


def test_startup_fails_only_work_whose_process_is_gone(run):
    here = AgentRun.objects.create(
        deployment=run.deployment, version=run.version, status="running",
        runner=f"{socket.gethostname()}:{os.getpid()}",
    )  # fmt: skip
    elsewhere = AgentRun.objects.create(
        deployment=run.deployment, version=run.version, status="running", runner="other-host:1"
    )
    # pid 1 is alive on this host: make the first row's process a gone one instead.
    gone_pid = 2**22 + 17
    AgentRun.objects.filter(pk=run.pk).update(runner=f"{socket.gethostname()}:{gone_pid}")
    jobs.fail_orphans()
    statuses = {r.pk: (r.status, r.failure_phase) for r in AgentRun.objects.all()}
    assert statuses[run.pk] == ("failed", "runtime")
    assert statuses[here.pk] == ("running", "")
    assert statuses[elsewhere.pk] == ("running", "")
