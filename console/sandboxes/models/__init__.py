"""Models of the sandbox domain (registered through console/models/__init__.py)."""
