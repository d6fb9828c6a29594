"""Models of the accounts domain (registered through console/models/__init__.py)."""
