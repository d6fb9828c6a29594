"""Custom sandbox templates: refs, builds (steps or a Dockerfile) on cached layers, live
build logs, and what a template's sandboxes get by default (docs/templates.md)."""
