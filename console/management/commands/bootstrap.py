from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from console.accounts.users import create_project, create_team, create_user
from console.actor import Actor
from console.keys.service import create_api_key
from console.models import KeyScope, Project, Team


class Command(BaseCommand):
    help = (
        "Headless set-up for scripts and CI: create (or reuse) a user, team and project "
        "and print a new API key for that project on stdout (nothing else on stdout)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", default="admin@localhost")
        parser.add_argument("--password", default=None, help="Set only when the user is created")
        parser.add_argument("--team", default="default", help="Team slug")
        parser.add_argument("--project", default="default", help="Project slug")
        parser.add_argument("--key-name", default="bootstrap")
        parser.add_argument(
            "--scope", choices=[KeyScope.FULL, KeyScope.READ], default=KeyScope.FULL
        )
        parser.add_argument("--json", action="store_true", help="Print a JSON object instead")

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        email = options["email"].strip().lower()
        if "@" not in email:
            raise CommandError("--email must be an email address")
        user = User.objects.filter(username=email).first()
        if user is None:
            user, _, _ = create_user(email, options["password"])
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            team = create_team(options["team"], user, slug=options["team"])
        elif not team.memberships.filter(user=user).exists():
            raise CommandError(f"{email} is not a member of team {team.slug}")
        project = Project.objects.filter(team=team, slug=options["project"]).first()
        if project is None:
            project = create_project(team, options["project"], slug=options["project"])
        issued = create_api_key(
            project,
            name=options["key_name"],
            scope=options["scope"],
            actor=Actor.person(user),
            via="bootstrap",
        )
        if options["json"]:
            import json

            self.stdout.write(
                json.dumps(
                    {
                        "api_key": issued.raw,
                        "team": team.slug,
                        "project": project.slug,
                        "project_id": project.public_id,
                        "email": email,
                    }
                )
            )
        else:
            self.stdout.write(issued.raw)
