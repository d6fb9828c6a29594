"""Volumes: persistent storage mounted into sandboxes, its store, files, /v1 routes and pages."""
