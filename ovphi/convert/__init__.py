"""Checkpoint -> OpenVINO IR folder."""
from .convert import DEFAULT_MODEL, Recipe, convert

__all__ = ["DEFAULT_MODEL", "Recipe", "convert"]
