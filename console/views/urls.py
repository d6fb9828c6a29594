"""HTML console URLconf; resource modules contribute their patterns here."""

from __future__ import annotations

from console.views import (
    accounts,
    agents,
    audit,
    keys,
    members,
    projects,
    sandbox_files,
    sandbox_processes,
    sandboxes,
    teams,
    volumes,
)
from console.views import previews as preview_views
from console.warm_pools import views as warm_pool_views
from console.webhooks import views as webhook_views

urlpatterns: list = []
urlpatterns += accounts.urlpatterns
urlpatterns += teams.urlpatterns
urlpatterns += projects.urlpatterns
urlpatterns += members.urlpatterns
urlpatterns += keys.urlpatterns
urlpatterns += audit.urlpatterns
urlpatterns += preview_views.urlpatterns
urlpatterns += webhook_views.urlpatterns
urlpatterns += sandboxes.urlpatterns
urlpatterns += sandbox_files.urlpatterns
urlpatterns += sandbox_processes.urlpatterns
urlpatterns += volumes.urlpatterns
urlpatterns += agents.urlpatterns
urlpatterns += warm_pool_views.urlpatterns
