"""Storage follows rows: when a volume row goes (its own delete, or its project's or team's),
its files go once the transaction commits; when an upload session row goes, its staged
parts do. Signals, because cascades delete these rows from many places."""

from __future__ import annotations

import logging
import shutil
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from console.models import UploadSession, Volume
from console.volumes.store import VolumeStoreError, store_named

log = logging.getLogger(__name__)


@receiver(post_delete, sender=Volume)
def _destroy_storage(sender: type[Volume], instance: Volume, **kwargs: Any) -> None:
    volume_id, backend = instance.public_id, instance.backend

    def destroy() -> None:
        try:
            store_named(backend).destroy(volume_id)
        except (VolumeStoreError, OSError):
            log.exception("could not remove the storage of deleted volume %s", volume_id)

    transaction.on_commit(destroy)


@receiver(post_delete, sender=UploadSession)
def _drop_staging(sender: type[UploadSession], instance: UploadSession, **kwargs: Any) -> None:
    from console.sandboxes.uploads import staging_dir

    directory = staging_dir(instance)
    transaction.on_commit(lambda: shutil.rmtree(directory, ignore_errors=True))
