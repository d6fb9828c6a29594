"""Domain errors: what domain code raises when it refuses or fails (docs/architecture.md,
"Errors").

A DomainError has a stable `code` (what clients branch on; docs/api.md lists them), a
`message` for people and optional `details`; it may add the contract's hints
(`retryable`, `suggested_action`, `error_detail`). It knows nothing of HTTP: the `/v1`
kit maps codes to statuses in one place (console/api/errors.py), the console in another
(console/views/errors.py). Codes name their domain (`sandbox_not_found`,
`volume_busy`, `preview_grant_not_found`); the generic ones (`invalid_request`,
`not_found`, `conflict`, `permission_denied`) serve every domain.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal or failure of domain code, with a stable code and no HTTP in it."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retryable: bool | None = None,
        suggested_action: str | None = None,
        error_detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retryable = retryable
        self.suggested_action = suggested_action
        self.error_detail = error_detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"
