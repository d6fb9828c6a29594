"""HTML console URLconf; resource modules contribute their patterns here."""

from __future__ import annotations

from console.accounts.views import account as accounts
from console.accounts.views import members, projects, teams
from console.agents import views as agents
from console.audit import views as audit
from console.code_interpreter import views as code_views
from console.desktop import views as desktop_views
from console.keys import views as keys
from console.previews import views as preview_views
from console.sandbox_templates import views as template_views
from console.sandboxes.views import files as sandbox_files
from console.sandboxes.views import processes as sandbox_processes
from console.sandboxes.views import sandboxes
from console.volumes import views as volumes
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
urlpatterns += template_views.urlpatterns
urlpatterns += code_views.urlpatterns
urlpatterns += desktop_views.urlpatterns
urlpatterns += warm_pool_views.urlpatterns
