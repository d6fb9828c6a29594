"""The sandbox domain: every state change of a sandbox or snapshot goes through here.

Used by the /v1 API, the console pages, the worker (timeouts) and the gateway
(wake-on-traffic). Functions raise DomainError with the contract's codes, so every
caller can show the same message. State changes are claimed with a conditional
UPDATE (status + `transition`), so a double pause, resume or kill is harmless, and
each one records a lifecycle event.

This module is the domain's public face: callers import it
(`from console.sandboxes import service as sandboxes`), never its parts, which
split the work by concern:
`operations.py`, `lookup.py`, `shapes.py`, `validation.py`, `create.py`, `transitions.py`, `destroy.py`, `snapshots.py`, `archives.py`, `processes.py`."""

from __future__ import annotations

from console.sandboxes.archives import snapshot_root
from console.sandboxes.create import create_sandbox, create_spec, reissue_traffic_token
from console.sandboxes.destroy import destroy_sandbox
from console.sandboxes.lookup import (
    get_sandbox,
    get_snapshot,
    metadata_filter,
    require_running,
    template_exists,
)
from console.sandboxes.operations import (
    ACTIVE,
    REASON_MANUAL,
    REASON_TIMEOUT,
    STALE_TRANSITION,
    driver_call,
    quietly,
)
from console.sandboxes.processes import exec_request, read_logs, run_command, start_process
from console.sandboxes.shapes import (
    SANDBOX_FIELDS,
    metrics_to_dict,
    network_view,
    process_to_dict,
    sample_to_dict,
    sandbox_to_dict,
    snapshot_to_dict,
    truncation_fields,
)
from console.sandboxes.snapshots import delete_snapshot, fork_sandbox, snapshot_sandbox
from console.sandboxes.transitions import (
    ensure_running,
    pause_sandbox,
    resume_existing,
    resume_sandbox,
    set_timeout,
)
from console.sandboxes.validation import (
    NAME_MAX,
    PATH_MAX,
    WORKSPACE,
    validated_create_fields,
    validated_envs,
)

__all__ = [
    "ACTIVE",
    "NAME_MAX",
    "PATH_MAX",
    "REASON_MANUAL",
    "REASON_TIMEOUT",
    "SANDBOX_FIELDS",
    "STALE_TRANSITION",
    "WORKSPACE",
    "create_sandbox",
    "create_spec",
    "delete_snapshot",
    "destroy_sandbox",
    "driver_call",
    "ensure_running",
    "exec_request",
    "fork_sandbox",
    "get_sandbox",
    "get_snapshot",
    "metadata_filter",
    "metrics_to_dict",
    "network_view",
    "pause_sandbox",
    "process_to_dict",
    "quietly",
    "read_logs",
    "reissue_traffic_token",
    "require_running",
    "resume_existing",
    "resume_sandbox",
    "run_command",
    "sample_to_dict",
    "sandbox_to_dict",
    "set_timeout",
    "snapshot_root",
    "snapshot_sandbox",
    "snapshot_to_dict",
    "start_process",
    "template_exists",
    "truncation_fields",
    "validated_create_fields",
    "validated_envs",
]
