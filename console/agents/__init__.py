"""Agent deployments: config checks, bundles, artifacts, job runs and services (docs/agents.md)."""
