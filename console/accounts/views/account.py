"""Sign up, sign in (with lockout), sign out, password change and reset, and the home redirect."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from console.accounts import lockout
from console.accounts.forms import SignUpForm
from console.accounts.users import create_user
from console.actor import Actor
from console.audit.service import record
from console.client_ip import client_ip
from console.models import Project, Team


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("home")


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("signin")
    project = (
        Project.objects.for_user(request.user).select_related("team").order_by("created_at").first()
    )
    if project is None:
        team = Team.objects.for_user(request.user).first()
        return redirect("team-detail", team_slug=team.slug) if team else redirect("team-create")
    return redirect("project-detail", team_slug=project.team.slug, project_slug=project.slug)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(_next_url(request))
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user, team, _ = create_user(form.cleaned_data["email"], form.cleaned_data["password"])
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        record(
            "signup",
            team=team,
            actor=Actor.of(request),
            target_type="user",
            target_id=user.username,
        )
        messages.success(request, "Welcome to Nullspace. Your first project is ready.")
        return redirect(_next_url(request))
    return render(
        request, "console/accounts/signup.html", {"form": form, "next": _next_url(request)}
    )


@require_http_methods(["GET", "POST"])
def signin(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated and request.method == "GET":
        return redirect(_next_url(request))
    data = None
    if request.method == "POST":
        data = request.POST.copy()
        data["username"] = data.get("username", "").strip().lower()  # usernames are emails
    form = AuthenticationForm(request, data=data)
    locked = False
    if data is not None:
        username = str(data["username"])
        ip = client_ip(request)
        locked = lockout.is_locked(username, ip)
        if not locked and form.is_valid():
            lockout.clear_failures(username, ip)
            user = form.get_user()
            login(request, user)
            for team in Team.objects.for_user(user):
                record(
                    "signin",
                    team=team,
                    actor=Actor.of(request),
                    target_type="user",
                    target_id=user.username,
                )
            return redirect(_next_url(request))
        if not locked and lockout.record_failure(username, ip):
            locked = True
            _record_lockout(request, username)
    return render(
        request,
        "console/accounts/signin.html",
        {
            "form": form,
            "locked": locked,
            "next": _next_url(request),
            "lockout_minutes": max(1, settings.SIGNIN_LOCKOUT_SECONDS // 60),
        },
        status=429 if locked else 200,
    )


def _record_lockout(request: HttpRequest, username: str) -> None:
    user = get_user_model().objects.filter(username=username).first()
    teams = list(Team.objects.for_user(user)) if user else [None]
    for team in teams:
        record(
            "signin.locked",
            team=team,
            actor=Actor.of(request),
            actor_label=username[:200],
            target_type="user",
            target_id=username[:64],
        )


@login_required
def password_change_done(request: HttpRequest) -> HttpResponse:
    messages.success(request, "Your password was changed.")
    return redirect("home")


def password_reset_complete(request: HttpRequest) -> HttpResponse:
    messages.success(request, "Your password was set. Sign in with it now.")
    return redirect("signin")


T = "console/accounts/"
urlpatterns = [
    path("", home, name="home"),
    path("signup/", signup, name="signup"),
    path("signin/", signin, name="signin"),
    path("signout/", auth_views.LogoutView.as_view(), name="signout"),
    path(
        "account/password/",
        auth_views.PasswordChangeView.as_view(
            template_name=T + "password_change.html",
            success_url=reverse_lazy("password-change-done"),
        ),
        name="password-change",
    ),
    path("account/password/done/", password_change_done, name="password-change-done"),
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            template_name=T + "password_reset.html",
            email_template_name=T + "password_reset_email.txt",
            subject_template_name=T + "password_reset_subject.txt",
            success_url=reverse_lazy("password-reset-done"),
        ),
        name="password-reset",
    ),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name=T + "password_reset_done.html"),
        name="password-reset-done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name=T + "password_reset_confirm.html",
            success_url=reverse_lazy("password-reset-complete"),
        ),
        name="password-reset-confirm",
    ),
    path("password-reset/complete/", password_reset_complete, name="password-reset-complete"),
]
