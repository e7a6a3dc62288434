"""The two input branches of a Siamese tracker, and the one name for the sets of them that attacks, template
refinement and defenses act on.

``"template"`` is the exemplar crop z (embedded once per initialisation), ``"search"`` the search crop x of every
frame, ``"both"`` the two.
"""

from __future__ import annotations

__all__ = ["BRANCHES", "WHERE", "branches", "check_where"]

BRANCHES = ("template", "search")
WHERE = BRANCHES + ("both",)


def check_where(where: str, what: str = "where") -> str:
    """``where`` if it is one of :data:`WHERE`, else ``ValueError`` naming the setting ``what``."""
    if where not in WHERE:
        raise ValueError(f"{what} must be one of {WHERE}, got {where!r}")
    return where


def branches(where: str) -> tuple[str, ...]:
    """The branches a ``where`` setting covers: ``("template", "search")`` for ``"both"``."""
    check_where(where)
    return BRANCHES if where == "both" else (where,)
