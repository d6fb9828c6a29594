"""Who is acting: a person in the console, an API key (with its scope) or the system.

Domain functions take one Actor instead of an (api_key, user, actor kind) triple; the
faces build it from the request (`Actor.of(request)`), background work uses
`SYSTEM` or `RECONCILE`. Lifecycle events and audit rows read who did what, and from
which address, from it (docs/architecture.md, "Actors"), so no domain function needs
the request itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from console.client_ip import client_ip as address_of
from console.models import ActorKind, ApiKey

REASON_API = "api"
REASON_CONSOLE = "console"


@dataclass(frozen=True)
class Actor:
    kind: str = ActorKind.USER
    user: Any = None  # the signed-in user (console), or who created the acting key
    api_key: ApiKey | None = None
    # Where the request came from (console/client_ip.py), for audit rows; None off a request.
    client_ip: str | None = None

    @classmethod
    def person(cls, user: Any, *, client_ip: str | None = None) -> Actor:
        """A signed-in person acting in the console."""
        return cls(ActorKind.USER, user=user, client_ip=client_ip)

    @classmethod
    def key(cls, api_key: ApiKey, *, client_ip: str | None = None) -> Actor:
        """A client of /v1 acting with an API key."""
        return cls(ActorKind.USER, api_key=api_key, client_ip=client_ip)

    @classmethod
    def of(cls, request: Any) -> Actor:
        """The actor of a request: its API key under /v1, else its signed-in user (None
        before sign-in), with the client's address."""
        ip = address_of(request)
        api_key = getattr(request, "api_key", None)
        if api_key is not None:
            return cls.key(api_key, client_ip=ip)
        user = getattr(request, "user", None)
        signed_in = user is not None and user.is_authenticated
        return cls.person(user if signed_in else None, client_ip=ip)

    @property
    def scope(self) -> str | None:
        """The key scope this actor may act with (None: a person or the system, whose
        rights the console's role checks or the code path itself decide)."""
        return self.api_key.scope if self.api_key is not None else None

    @property
    def reason(self) -> str:
        """The default reason of a lifecycle event this actor causes."""
        if self.kind != ActorKind.USER:
            return self.kind
        return REASON_API if self.api_key is not None else REASON_CONSOLE


SYSTEM = Actor(ActorKind.SYSTEM)
RECONCILE = Actor(ActorKind.RECONCILE)
