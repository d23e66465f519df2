"""Which categories a classifier covers, as UnsafeBench scores them: metrics for the others mean nothing.

A classifier declares the UnsafeBench categories it was built for (NudeNet: Sexual; Q16: all but Sexual and
Spam; VLMs: all). A dataset category that is an UnsafeBench category is covered when declared; a LlavaGuard
category when it maps to a declared one; any other category (a user's own taxonomy) is taken as covered.
"""

from __future__ import annotations

from imagesafety.taxonomy import LLAVAGUARD, UNSAFEBENCH, map_category

RULE = (
    "categories the classifier was not built for are shown as '-' and left out of the overall and per-source "
    "figures; images without a category are always counted"
)


def is_covered(category: str | None, covers: frozenset[str] | None) -> bool:
    """Whether the classifier is meant to score images of this dataset category."""
    if (
        covers is None or not isinstance(category, str) or not category or category in covers
    ):  # NaN: a row without a category
        return True
    ub = UNSAFEBENCH.find(category)
    if ub is not None:
        return ub.key in covers
    lg = LLAVAGUARD.find(category)
    if lg is not None:
        return any(c.key in covers for c in map_category(lg.key, LLAVAGUARD, UNSAFEBENCH))
    return all(k in UNSAFEBENCH for k in covers)  # a user's own category: covered unless the classifier lists its own


def parse_covers(value: str | list[str] | None) -> frozenset[str] | None:
    """`--covers`: 'all' or a comma-separated list of category names (UnsafeBench's, or any taxonomy's keys)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [i.strip() for i in items if i.strip()]
    if not items or items == ["all"]:
        return None
    return frozenset(UNSAFEBENCH.get(i).key if UNSAFEBENCH.find(i) else i for i in items)
