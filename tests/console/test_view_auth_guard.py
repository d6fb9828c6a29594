"""Every view under /t/ must carry team_member_required's marker (open-chat-studio's guard)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, get_resolver


def _walk(patterns, prefix=""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern


def test_team_scoped_views_check_membership():
    team_scoped = [
        (route, p) for route, p in _walk(get_resolver().url_patterns) if route.startswith("t/")
    ]
    assert len(team_scoped) >= 15, "the walk found too few team-scoped views"
    missing = [route for route, p in team_scoped if not hasattr(p.callback, "team_access_role")]
    assert not missing, f"team-scoped views without team_member_required: {missing}"


def test_guard_notices_a_bare_view():
    from django.urls import path

    def bare(request, team_slug):
        raise AssertionError

    routes = list(_walk([path("t/<slug:team_slug>/x/", bare)]))
    assert not hasattr(routes[0][1].callback, "team_access_role")
