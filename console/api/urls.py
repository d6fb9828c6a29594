"""The /v1 URLconf. Each resource module adds its own `urlpatterns` list here."""

from __future__ import annotations

from django.urls import re_path

from console.agents import api as agents_api
from console.api import fallback
from console.code_interpreter import api as code_api
from console.desktop.api import routes as desktop_api
from console.keys import api as keys_api
from console.previews import api as previews_api
from console.sandbox_templates import api as templates_api
from console.sandboxes.api import files as files_api
from console.sandboxes.api import lifecycle as lifecycle_api
from console.sandboxes.api import processes as processes_api
from console.sandboxes.api import pty as pty_api
from console.sandboxes.api import sandboxes as sandboxes_api
from console.sandboxes.api import snapshots as snapshots_api
from console.sandboxes.api import uploads as uploads_api
from console.ssh import api as ssh_api
from console.volumes.api import volumes as volumes_api
from console.warm_pools import api as warm_pools_api
from console.webhooks import api as webhooks_api

urlpatterns: list = []
urlpatterns += files_api.urlpatterns
urlpatterns += uploads_api.urlpatterns
urlpatterns += previews_api.urlpatterns
urlpatterns += sandboxes_api.urlpatterns
urlpatterns += processes_api.urlpatterns
urlpatterns += snapshots_api.urlpatterns
urlpatterns += lifecycle_api.urlpatterns
urlpatterns += keys_api.urlpatterns
urlpatterns += pty_api.urlpatterns
urlpatterns += webhooks_api.urlpatterns
urlpatterns += volumes_api.urlpatterns
urlpatterns += agents_api.urlpatterns
urlpatterns += templates_api.urlpatterns
urlpatterns += code_api.urlpatterns
urlpatterns += ssh_api.urlpatterns
urlpatterns += desktop_api.urlpatterns
urlpatterns += warm_pools_api.urlpatterns

# The catch-all must stay last: unknown routes answer the contract's envelope.
urlpatterns += [re_path(r"^(?P<rest>.*)$", fallback.unknown_route, name="v1-unknown")]
