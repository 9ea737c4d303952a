"""One table of how every learner is shown: its registry key, display name and colour.

Reports, the README headline and figures all read it, so a learner is named and coloured the
same everywhere; a plug-in learner not in it shows under its own key in a colour of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib import colormaps


@dataclass(frozen=True)
class Label:
    key: str
    """the registry name (``OfflineMetaLearner.name``)"""
    name: str
    """how reports print it"""
    color: str
    """its colour in every figure"""


LABELS: dict[str, Label] = {
    lbl.key: lbl
    for lbl in (
        Label("macaw", "MACAW", "#1f77b4"),
        Label("mt-ft", "MT+FT", "#2ca02c"),
        Label("meta-bc", "Meta-BC", "#ff7f0e"),
        Label("pearl", "offline PEARL", "#d62728"),
        Label("prompt-dt", "Prompt-DT", "#8c564b"),
        Label("focal", "FOCAL", "#9467bd"),
    )
}
"""In the order reports list algorithms."""


def display_name(key: str) -> str:
    return LABELS[key].name if key in LABELS else key


def color(key: str, i: int = 0) -> str:
    """The learner's colour; another key (a variant, a plug-in) takes one of tab10's last four
    colours by its position ``i``."""
    if key in LABELS:
        return LABELS[key].color
    r, g, b, _ = colormaps["tab10"](6 + i % 4)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
