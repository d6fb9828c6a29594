"""`<port>-<sandbox label>`: a sandbox's port, opened by a preview grant.

parse: the label's shape. admit: the grant (auth.py), then the sandbox and its traffic
token. upstream: the runtime driver's address, waking a paused auto-resume sandbox.
stalled: the sandbox may have been paused since we cached it running; wake it then.
"""

from __future__ import annotations

import re

from gateway import auth, upstream
from gateway.headers import upstream_host
from gateway.routes import Admission, Route, Upstream
from gateway.types import Scope
from gateway.upstream import SandboxInfo

# No leading zero in the port: `08080-` is not another spelling of 8080.
_LABEL = re.compile(r"^(?P<port>[1-9][0-9]{0,4})-(?P<label>[a-z][a-z0-9]*-[a-z0-9]+)$")


class SandboxPort:
    name = "sandbox_port"

    def parse(self, label: str) -> Route | None:
        match = _LABEL.match(label)
        if match is None:
            return None
        port = int(match["port"])
        if port > 65535:
            return None
        kind, _, rest = match["label"].partition("-")
        return Route(self.name, f"{kind}_{rest}", port)

    async def admit(self, scope: Scope, route: Route, transport: str) -> Admission:
        admission = await auth.admit(scope, route, transport)
        sandbox = await upstream.sandbox_info(route.subject)
        auth.check_traffic_token(scope, sandbox)
        admission.loaded = sandbox
        return admission

    async def upstream(self, scope: Scope, route: Route, admission: Admission) -> Upstream:
        sandbox = admission.loaded
        assert isinstance(sandbox, SandboxInfo)
        address = await upstream.address(sandbox, route.port)
        return Upstream(address, upstream_host(scope, sandbox.mask_request_host, route.port))

    async def stalled(self, route: Route, admission: Admission) -> None:
        fresh = await upstream.sandbox_info(route.subject, fresh=True)
        if fresh.status != upstream.RUNNING:
            # Paused (or gone) since we cached it: wake it, or answer why not. A frozen app
            # answers the request it already holds once it runs again.
            await upstream.address(fresh, route.port)
