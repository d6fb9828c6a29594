"""The desktop's /v1 routes (routes.py) and its managed viewer page (viewer.py)."""
