"""Route kinds: what a name under the preview domain means, and how a request for it is
let through. The pipeline (gateway/app.py) knows only this interface; a new kind (an
agent service's stable host, say) is one module added to KINDS, not an edit of the
pipeline. docs/gateway.md walks through the steps and how to add a kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gateway.types import Address, Scope


@dataclass(frozen=True, slots=True)
class Route:
    """A parsed preview name: which kind, what it names (`subject`), on which port."""

    kind: str
    subject: str  # e.g. the sandbox id
    port: int


@dataclass(slots=True)
class Admission:
    """Access was granted: by what, until when, and what the kind loaded on the way."""

    grant_id: str  # usage accounting and revocation key; "" when the kind has no grant
    expires_at: float | None  # time.time() at which the access ends, None: never
    via: str  # edge | proxy | cookie (how the credential came)
    bootstrap: bool  # answer with the 303 + cookie instead of proxying
    loaded: object = field(default=None)  # the kind's own record (a SandboxInfo, ...)


@dataclass(frozen=True, slots=True)
class Upstream:
    address: Address
    host: str  # the Host header the upstream gets


class RouteKind(Protocol):
    name: str

    def parse(self, label: str) -> Route | None:
        """The label (the name without `.<preview domain>`) as this kind's Route, or None."""

    async def admit(self, scope: Scope, route: Route, transport: str) -> Admission:
        """The access policy: load what it needs, raise GatewayError to refuse."""

    async def upstream(self, scope: Scope, route: Route, admission: Admission) -> Upstream:
        """Where the request goes (waking what must be woken first)."""

    async def stalled(self, route: Route, admission: Admission) -> None:
        """The upstream has been silent a while: re-check what may have changed under us
        (raise GatewayError to answer instead of waiting on)."""


def _kinds() -> tuple[RouteKind, ...]:
    from gateway.routes.sandbox_port import SandboxPort

    return (SandboxPort(),)


KINDS: tuple[RouteKind, ...] = _kinds()
_BY_NAME = {kind.name: kind for kind in KINDS}

# Labels seen recently -> their Route (or None): parsing is pure, and a busy preview
# sends the same Host on every request.
_parsed: dict[str, Route | None] = {}
MAX_PARSED = 10_000


def parse(label: str) -> tuple[RouteKind, Route] | None:
    try:
        route = _parsed[label]
    except KeyError:
        route = next((r for kind in KINDS if (r := kind.parse(label)) is not None), None)
        if len(_parsed) >= MAX_PARSED:
            _parsed.clear()
        _parsed[label] = route
    if route is None:
        return None
    return _BY_NAME[route.kind], route
