"""Task families as gymnasium environments (protocol §3)."""

from envs.base import Task, TaskFamily, known_families, make_family, register_builtin
from envs.gym_ids import env_id

register_builtin()  # families and their gymnasium ids (omrl/<family>-v0)

__all__ = ["Task", "TaskFamily", "env_id", "known_families", "make_family"]
