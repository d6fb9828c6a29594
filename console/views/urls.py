"""HTML console URLconf; resource modules contribute their patterns here."""

from __future__ import annotations

urlpatterns: list = []
