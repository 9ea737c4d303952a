"""Task families as gymnasium environments (SPEC §3)."""

from envs.base import Task, TaskFamily, known_families, make_family

__all__ = ["Task", "TaskFamily", "known_families", "make_family"]
