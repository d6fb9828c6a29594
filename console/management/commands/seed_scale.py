"""`manage.py seed_scale`: fill one project with a busy team's volumes, for development and
for bench/list_bench.py (docs/pagination.md).

At --scale 1: 10,000 sandboxes (200 running), 50,000 lifecycle events, 1,000 snapshots,
10,000 preview grants (2,000 on one sandbox), 1,000 API keys, 50 members, 100,000 audit
rows. Rows only: no sandbox has processes, a workspace or an archive, so serve the seeded
database with `manage.py serve --no-worker` (start-up reconciliation would mark the
"running" rows as lost). Everything is inserted with bulk_create in batches.

Prints one JSON object: a usable API key for the project, the console sign-in, the id of
the sandbox with the most grants, and the counts inserted.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from console.accounts.users import create_project, create_team
from console.actor import Actor
from console.audit.service import ACTIONS
from console.keys.service import create_api_key
from console.models import (
    ActorKind,
    ApiKey,
    AuditEvent,
    AuthMode,
    EventStatus,
    KeyScope,
    LifecycleEvent,
    Membership,
    Operation,
    PreviewGrant,
    Project,
    Role,
    Sandbox,
    SandboxStatus,
    Snapshot,
    SnapshotKind,
    Team,
)
from console.tokens import API_KEY, new_secret

BATCH = 2000
# Volumes at --scale 1 (the "busy team").
VOLUMES = {
    "sandboxes": 10_000,
    "running": 200,
    "events": 50_000,
    "snapshots": 1_000,
    "grants": 10_000,
    "grants_on_one_sandbox": 2_000,
    "api_keys": 1_000,
    "members": 50,
    "audit": 100_000,
}
# Rows are spread over this much past time, so time-ordered pages are realistic.
SPAN = timedelta(days=90)


class Command(BaseCommand):
    help = "Fill a new project with thousands of rows of every kind (rows only, no processes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default="scale@example.com")
        parser.add_argument("--password", default="scale-seed-password")
        parser.add_argument("--team", default="scale", help="Team slug (created if missing)")
        parser.add_argument("--project", default="busy", help="Project slug (must be new)")
        parser.add_argument(
            "--scale", type=float, default=1.0, help="Multiply every volume (0.01 for tests)"
        )
        parser.add_argument("--seed", type=int, default=15, help="Random seed")

    def handle(self, *args: Any, **options: Any) -> None:
        scale = options["scale"]
        if not 0 < scale <= 10:
            raise CommandError("--scale must be in (0, 10]")
        volumes = {name: max(1, round(count * scale)) for name, count in VOLUMES.items()}
        volumes["running"] = min(volumes["running"], volumes["sandboxes"])
        volumes["grants_on_one_sandbox"] = min(volumes["grants_on_one_sandbox"], volumes["grants"])
        with transaction.atomic():
            owner, team, project = self._owner_team_project(options)
            issued = create_api_key(
                project, name="seed", actor=Actor.person(owner), via="bootstrap"
            )
            seeder = Seeder(project, team, owner, random.Random(options["seed"]), volumes)
            counts = seeder.run()
        _analyze()
        self.stdout.write(
            json.dumps(
                {
                    "api_key": issued.raw,
                    "email": owner.username,
                    "password": options["password"],
                    "team": team.slug,
                    "project": project.slug,
                    "big_sandbox": seeder.big_sandbox.public_id,
                    "counts": counts,
                }
            )
        )

    def _owner_team_project(self, options: dict[str, Any]) -> tuple[Any, Team, Project]:
        User = get_user_model()
        email = options["email"].strip().lower()
        owner = User.objects.filter(username=email).first()
        if owner is None:
            owner = User.objects.create_user(
                username=email, email=email, password=options["password"]
            )
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            team = create_team(options["team"], owner, slug=options["team"])
        elif not team.memberships.filter(user=owner, role=Role.OWNER).exists():
            raise CommandError(f"{email} is not an owner of team {team.slug}")
        if Project.objects.filter(team=team, slug=options["project"]).exists():
            raise CommandError(f"Project {team.slug}/{options['project']} exists; seed a new one")
        return owner, team, create_project(team, options["project"], slug=options["project"])


def _analyze() -> None:
    """Fresh statistics, so the planner sees the new volumes at once (autovacuum would take
    a while, and until then it plans for empty tables)."""
    if connection.vendor != "postgresql":
        return
    tables = [m._meta.db_table for m in (Sandbox, LifecycleEvent, Snapshot, PreviewGrant,
                                         ApiKey, Membership, AuditEvent, get_user_model())]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE " + ", ".join(connection.ops.quote_name(t) for t in tables))


class Seeder:
    def __init__(
        self, project: Project, team: Team, owner: Any, rng: random.Random, volumes: dict[str, int]
    ) -> None:
        self.project, self.team, self.owner, self.rng, self.n = project, team, owner, rng, volumes
        self.now = timezone.now()

    def when(self, start: datetime | None = None) -> datetime:
        """A random moment between `start` (default: SPAN ago) and now."""
        start = start or self.now - SPAN
        return start + (self.now - start) * self.rng.random()

    def run(self) -> dict[str, int]:
        sandboxes = self.sandboxes()
        self.big_sandbox = next(s for s in sandboxes if s.status == SandboxStatus.RUNNING)
        return {
            "sandboxes": len(sandboxes),
            "running": sum(1 for s in sandboxes if s.status == SandboxStatus.RUNNING),
            "events": self.events(sandboxes),
            "snapshots": self.snapshots(sandboxes),
            "grants": self.grants(sandboxes),
            "api_keys": self.api_keys(),
            "members": self.members(),
            "audit": self.audit(),
        }

    def sandboxes(self) -> list[Sandbox]:
        rows = []
        for i in range(self.n["sandboxes"]):
            created = self.when()
            running = i < self.n["running"]
            status = SandboxStatus.RUNNING if running else SandboxStatus.DESTROYED
            rows.append(
                Sandbox(
                    project=self.project,
                    status=status,
                    metadata={"team": self.rng.choice(["eval", "web", "ml"]), "n": str(i)},
                    created_at=created,
                    started_at=created,
                    # Far away: no timeout falls due while the rows are served.
                    timeout_ms=30 * 24 * 3600 * 1000,
                    timeout_at=self.now + timedelta(days=30) if running else None,
                    destroyed_at=None if running else self.when(created),
                )
            )
        return Sandbox.objects.bulk_create(rows, batch_size=BATCH)

    def events(self, sandboxes: list[Sandbox]) -> int:
        operations = [Operation.CREATE, Operation.TIMEOUT_UPDATED, Operation.HIBERNATE,
                      Operation.RESUME_FROM_SNAPSHOT, Operation.DESTROY]  # fmt: skip
        base = int((self.now - SPAN).timestamp() * 1e9)
        rows = []
        for i in range(self.n["events"]):
            sandbox = sandboxes[i % len(sandboxes)]
            occurred = self.when(sandbox.created_at)
            rows.append(
                LifecycleEvent(
                    project=self.project,
                    seq=base + i * 1000 + self.rng.randrange(1000),
                    occurred_at=occurred,
                    operation=operations[(i // len(sandboxes)) % len(operations)],
                    status=EventStatus.SUCCEEDED,
                    actor_kind=ActorKind.USER,
                    sandbox_id=sandbox.public_id,
                )
            )
        LifecycleEvent.objects.bulk_create(rows, batch_size=BATCH)
        return len(rows)

    def snapshots(self, sandboxes: list[Sandbox]) -> int:
        rows = []
        for i in range(self.n["snapshots"]):
            # A tenth of them on the busiest sandbox, the rest spread out.
            sandbox = self.big_sandbox if i % 10 == 0 else self.rng.choice(sandboxes)
            rows.append(
                Snapshot(
                    project=self.project,
                    sandbox=sandbox,
                    sandbox_public_id=sandbox.public_id,
                    kind=SnapshotKind.MANUAL,
                    size_bytes=self.rng.randrange(1 << 20, 1 << 28),
                    created_at=self.when(sandbox.created_at),
                )
            )
        Snapshot.objects.bulk_create(rows, batch_size=BATCH)
        return len(rows)

    def grants(self, sandboxes: list[Sandbox]) -> int:
        live = [s for s in sandboxes if s.status == SandboxStatus.RUNNING]
        rows = []
        for i in range(self.n["grants"]):
            on_big = i < self.n["grants_on_one_sandbox"]
            sandbox = self.big_sandbox if on_big else self.rng.choice(live)
            issued = self.when(self.now - timedelta(days=1))
            fate = self.rng.random()
            uses = self.rng.randrange(0, 500)
            rows.append(
                PreviewGrant(
                    project=self.project,
                    sandbox=sandbox,
                    port=self.rng.choice([3000, 5173, 8080, 8888]),
                    auth_mode=AuthMode.PROXY if fate < 0.2 else AuthMode.DIRECT,
                    token_kinds=["http_port", "websocket_port"],
                    created_by=self.owner,
                    issued_at=issued,
                    created_at=issued,
                    # A third revoked, a third expired, a third active.
                    revoked_at=self.when(issued) if fate < 0.33 else None,
                    expires_at=self.now - timedelta(minutes=5)
                    if 0.33 <= fate < 0.66
                    else self.now + timedelta(hours=12),
                    use_count=uses,
                    http_request_count=uses - uses // 5,
                    websocket_connection_count=uses // 5,
                    bytes_in_count=uses * 300,
                    bytes_out_count=uses * 9000,
                    first_used_at=issued if uses else None,
                    last_used_at=self.when(issued) if uses else None,
                )
            )
        PreviewGrant.objects.bulk_create(rows, batch_size=BATCH)
        return len(rows)

    def api_keys(self) -> int:
        rows = []
        for i in range(self.n["api_keys"]):
            secret = new_secret(API_KEY)  # random and never printed: these keys are decoys
            created = self.when()
            rows.append(
                ApiKey(
                    project=self.project,
                    name=f"ci-{i}",
                    prefix=secret.prefix,
                    digest=secret.digest,
                    scope=KeyScope.READ if i % 3 == 0 else KeyScope.FULL,
                    created_by=self.owner,
                    created_at=created,
                    revoked_at=self.when(created) if i % 4 == 0 else None,
                    last_used_at=self.when(created) if i % 2 else None,
                )
            )
        ApiKey.objects.bulk_create(rows, batch_size=BATCH)
        return len(rows)

    def members(self) -> int:
        User = get_user_model()
        unusable = make_password(None)  # nobody signs in as these; one hash for all
        domain = self.team.slug
        users = User.objects.bulk_create(
            User(
                username=f"member{i}@{domain}.example",
                email=f"member{i}@{domain}.example",
                password=unusable,
            )  # fmt: skip
            for i in range(self.n["members"] - 1)
        )
        roles = [Role.ADMIN, Role.MEMBER, Role.MEMBER, Role.VIEWER]
        Membership.objects.bulk_create(
            Membership(team=self.team, user=user, role=roles[i % 4], created_at=self.when())
            for i, user in enumerate(users)
        )
        return len(users) + 1

    def audit(self) -> int:
        actors = [self.owner.username] + [f"member{i}@{self.team.slug}.example" for i in range(20)]
        actors += [f"api key ns_{i:06d}…" for i in range(10)]
        rows = (
            AuditEvent(
                team=self.team,
                actor_label=self.rng.choice(actors),
                action=self.rng.choice(ACTIONS),
                target_type="sandbox",
                target_id=f"sb_{i:012d}",
                ip="127.0.0.1",
                metadata={"n": i},
                created_at=self.when(),
            )
            for i in range(self.n["audit"])
        )
        AuditEvent.objects.bulk_create(rows, batch_size=BATCH)
        return int(self.n["audit"])
