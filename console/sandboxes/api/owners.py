"""Whose files an API request is about: a sandbox or a volume. Shared routes (upload
sessions) are built once per owner kind from these lookups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from console.api.auth import ApiRequest
from console.models import Sandbox, Volume
from console.runtime.base import FileStore
from console.sandboxes.api.files import file_errors, sandbox_for
from console.volumes import service as volumes


@dataclass(frozen=True)
class Owner:
    kind: str  # sandbox | volume
    row: Sandbox | Volume
    files: str | FileStore  # what console/sandboxes/files.py takes: a runtime id or a store


@dataclass(frozen=True)
class OwnerKind:
    """How one kind of owner is found from an API request (another project's is a 404)."""

    kind: str
    lookup: Callable[[ApiRequest, str], Owner]


def _sandbox(request: ApiRequest, sandbox_id: str) -> Owner:
    sandbox = sandbox_for(request, sandbox_id)
    return Owner("sandbox", sandbox, sandbox.runtime_id)


def volume_owner(volume: Volume) -> Owner:
    with file_errors():
        return Owner("volume", volume, volumes.files(volume))


def _volume(request: ApiRequest, volume_id: str) -> Owner:
    return volume_owner(volumes.get_volume(request.project, volume_id))


SANDBOX = OwnerKind("sandbox", _sandbox)
VOLUME = OwnerKind("volume", _volume)
