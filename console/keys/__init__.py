"""Project API keys: issue, revoke, rotate; their /v1 routes and console pages."""
