"""Garbage collection of template layers (docs/templates.md "Garbage collection"): what a
collection keeps (referenced by a build, used within the grace period), what it removes
and the bytes it reports, a dry run, a held lock, the command and the worker's job; and a
real build whose template is deleted. Every layer here is in this test's own layer
directory (RUNTIME_LAYER_DIR), never in the machine's shared cache."""

from __future__ import annotations

import fcntl
import os
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from console.actor import Actor
from console.models import Template, TemplateBuild
from console.runtime.layer_store import LOCK, Collection, LayerStore
from console.sandbox_templates import engine, layer_gc, service
from console.sandbox_templates import jobs as template_jobs
from console.sandbox_templates.models import BuildStatus
from console.sandboxes import service as sandboxes

DAY = 24 * 3600


@pytest.fixture
def store(settings, tmp_path, request):
    """The isolated runtime on a layer directory of this test's own."""
    settings.RUNTIME_LAYER_DIR = tmp_path / "layers"
    driver = request.getfixturevalue("runtime")
    assert driver.layer_store.root == tmp_path / "layers"
    assert not str(driver.layer_store.root).startswith("/var/cache/nullspace")
    return driver.layer_store


def make_layer(store: LayerStore, tmp_path, layer_id: str, *, age: float = 0, size: int = 100):
    upper = tmp_path / f"upper-{layer_id}"
    upper.mkdir()
    (upper / "file").write_bytes(b"x" * size)
    store.capture(upper, layer_id)
    if age:
        then = time.time() - age
        os.utime(store.root / layer_id / "layer.json", (then, then))
    return layer_id


def collect(grace_hours: float) -> Collection:
    done = layer_gc.collect(grace_hours)
    assert done is not None  # the isolated runtime keeps layers
    return done


def build_with(project, name: str, layers: list[str]) -> TemplateBuild:
    template = Template.objects.create(team=project.team, project=project, name=name)
    return TemplateBuild.objects.create(
        template=template, project=project, status=BuildStatus.READY, layers=layers
    )


@pytest.mark.django_db
def test_referenced_and_recent_layers_stay_old_unreferenced_ones_go(store, tmp_path, project):
    kept = make_layer(store, tmp_path, "a" * 32, age=3 * DAY)
    recent = make_layer(store, tmp_path, "b" * 32, age=3600)
    old = make_layer(store, tmp_path, "c" * 32, age=3 * DAY, size=4096)
    build_with(project, "keeps", [kept])

    done = collect(24)

    assert not done.locked
    assert done.removed == [(old, 4096)] and done.bytes_freed == 4096
    assert (done.kept_referenced, done.kept_recent) == (1, 1)
    assert store.ids() == [kept, recent]
    assert not any(p.name.endswith(".rm") for p in store.root.iterdir())  # no trash left


@pytest.mark.django_db
def test_reuse_stamps_a_layer_so_it_is_kept_for_the_grace_period(store, tmp_path):
    layer = make_layer(store, tmp_path, "d" * 32, age=3 * DAY)
    store.touch(layer)  # what a build reusing it, or a sandbox starting on it, does
    assert collect(24).removed == []
    assert collect(0).removed == [(layer, 100)]


@pytest.mark.django_db
def test_a_dry_run_removes_nothing(store, tmp_path, settings):
    layer = make_layer(store, tmp_path, "e" * 32, age=3 * DAY)
    settings.LAYER_GC_GRACE_HOURS = 0  # off: by hand, the grace period must be said
    with pytest.raises(CommandError, match="--grace-hours"):
        call_command("runtime_layers", "gc", stdout=StringIO())
    settings.LAYER_GC_GRACE_HOURS = 24
    out = StringIO()
    call_command("runtime_layers", "gc", "--dry-run", stdout=out)
    assert f"would remove {layer} (100 bytes)" in out.getvalue()
    assert "would remove 1 layer(s), 100 bytes" in out.getvalue()
    assert store.ids() == [layer]
    out = StringIO()
    call_command("runtime_layers", "gc", stdout=out)
    assert f"removed {layer} (100 bytes)" in out.getvalue()
    assert store.ids() == []


@pytest.mark.django_db
def test_a_held_lock_means_another_collector_is_at_work_and_nothing_is_removed(store, tmp_path):
    layer = make_layer(store, tmp_path, "f" * 32, age=3 * DAY)
    with open(store.root / LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = collect(0)
        assert done.locked and done.removed == []
        with pytest.raises(CommandError, match="holds the layer store's lock"):
            call_command("runtime_layers", "gc", "--grace-hours", "0", stdout=StringIO())
    assert store.ids() == [layer]
    assert collect(0).removed == [(layer, 100)]


@pytest.mark.django_db
def test_the_worker_job_follows_the_setting_and_zero_turns_it_off(store, tmp_path, settings):
    layer = make_layer(store, tmp_path, "1" * 32, age=1.5 * DAY)
    settings.LAYER_GC_GRACE_HOURS = 0
    template_jobs.collect_layers()
    assert store.ids() == [layer]
    settings.LAYER_GC_GRACE_HOURS = 48
    template_jobs.collect_layers()
    assert store.ids() == [layer]
    settings.LAYER_GC_GRACE_HOURS = 24
    template_jobs.collect_layers()
    assert store.ids() == []


@pytest.mark.django_db(transaction=True)
def test_a_deleted_templates_layers_are_collected_and_another_templates_stay(store, project):
    def built(name: str, marker: str) -> TemplateBuild:
        body = {
            "name": name,
            "base_image": "debian:bookworm",
            "steps": [{"action": "run", "command": f"echo {marker} > /{marker}"}],
        }
        build = service.start_build(project, body, actor=Actor())
        engine.run(build.public_id)
        build.refresh_from_db()
        assert build.status == BuildStatus.READY, build.error
        return build

    gone, stays = built("gone", "one"), built("stays", "two")
    assert gone.layers and stays.layers and not set(gone.layers) & set(stays.layers)
    assert set(store.ids()) == set(gone.layers) | set(stays.layers)

    assert collect(0).removed == []  # both templates' builds reference theirs
    service.delete(project.team, "gone", actor=Actor())
    done = collect(0)  # the grace period forced to nothing

    assert sorted(layer for layer, _size in done.removed) == sorted(gone.layers)
    assert store.ids() == sorted(stays.layers)

    # A sandbox runs on the kept template's layers (and stamps them); even with every row
    # of that template gone, the runtime's record keeps its layers until it is destroyed.
    sandbox, _token = sandboxes.create_sandbox(project, template="stays", actor=Actor())
    assert all((store.root / layer / "last_used").is_file() for layer in stays.layers)
    Template.objects.filter(pk=stays.template_id).delete()
    assert collect(0).removed == []
    sandboxes.destroy_sandbox(sandbox, actor=Actor())
    assert sorted(layer for layer, _size in collect(0).removed) == sorted(stays.layers)
    assert store.ids() == []
