"""What an operator reads for the statistics' internal keys (``d_over_r``, ``point_rule_intervene``, ...).

The keys stay the JSON names (``analyze --json``, the report's data block); people see these labels in the
terminal report and the HTML page, so both say the same thing.
"""

from __future__ import annotations

__all__ = ["label_of"]

_LABELS = {
    "p": "p (control failure rate)",
    "r": "r (recoveries / control failures)",
    "d": "d (disruptions / control successes)",
    "p_star": "p_star (break-even failure rate)",
    "net": "net (change in success rate)",
    "d_over_r": "d/r (disruption rate over recovery rate)",
    "discordant_rate": "discordant rate",
    "minimum_detectable_effect": "minimum detectable |net|",
    "tasks_needed": "tasks needed",
    "more_tasks_needed": "more tasks needed",
    "prefer_selection": "advice on best-of-N selection (d/r)",
    "point_rule_intervene": "the paper's rule on point estimates (p > p_star)",
}


def label_of(key: str) -> str:
    """The label of a statistics key; an unknown key reads as words rather than as an identifier."""
    return _LABELS.get(key, key.replace("_", " "))
