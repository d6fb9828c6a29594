"""Public identifiers: a kind prefix plus random lowercase characters (never integer keys).

Each kind has a named function so model fields can use it as a default (migrations
need an importable callable).
"""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits


def new_public_id(prefix: str, length: int = 12) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_project_id() -> str:
    return new_public_id("prj_")


def new_key_id() -> str:
    return new_public_id("key_")


def new_sandbox_id() -> str:
    return new_public_id("sb_")


def new_snapshot_id() -> str:
    return new_public_id("snap_")


def new_grant_id() -> str:
    return new_public_id("pvg_")


def new_ssh_access_id() -> str:
    return new_public_id("ssh_")


def new_upload_id() -> str:
    return new_public_id("upl_", 16)


def new_invitation_id() -> str:
    return new_public_id("inv_")


def new_webhook_id() -> str:
    return new_public_id("wh_")


def new_delivery_id() -> str:
    return new_public_id("del_")


def new_attempt_id() -> str:
    return new_public_id("att_")


def new_deployment_id() -> str:
    return new_public_id("adpl_")


def new_warm_pool_id() -> str:
    return new_public_id("twp_")


def new_agent_version_id() -> str:
    return new_public_id("adver_")


def new_agent_artifact_id() -> str:
    return new_public_id("adart_")


def new_agent_build_id() -> str:
    return new_public_id("adbld_")


def new_agent_run_id() -> str:
    return new_public_id("adrun_")


def new_agent_service_id() -> str:
    return new_public_id("adsvc_")


def new_volume_id() -> str:
    return new_public_id("vol_")


def new_attachment_id() -> str:
    return new_public_id("vat_")


def new_code_context_id() -> str:
    return new_public_id("ctx_")


def new_code_run_id() -> str:
    return new_public_id("crun_")


def new_code_artifact_id() -> str:
    return new_public_id("art_")
