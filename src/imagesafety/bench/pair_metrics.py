"""Metrics over counterfactual pairs (same pair_id, labels flipped): does the classifier see the feature?

- pair accuracy: share of pairs whose two images are both decided correctly;
- flip sensitivity: share of pairs whose unsafe image scores higher than its safe counterpart.
"""

from __future__ import annotations

import pandas as pd

from imagesafety.bench.grouping import grouped


def pair_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per complete pair: ids, category, the unsafe and safe members' scores and decisions."""
    ok = rows[rows["pair_id"].notna() & rows["error"].isna() & rows["label"].notna()]
    pairs = []
    for pair_id, part in ok.groupby("pair_id", sort=True):
        unsafe, safe = part[part["label"] == 1], part[part["label"] == 0]
        if len(unsafe) == 0 or len(safe) == 0:
            continue
        u, s = unsafe.iloc[0], safe.iloc[0]
        pairs.append(
            {
                "pair_id": pair_id,
                "category": u["category"] or s["category"],
                "unsafe_id": u["id"],
                "safe_id": s["id"],
                "unsafe_score": float(u["score"]),
                "safe_score": float(s["score"]),
                "unsafe_decision": int(u["decision"]),
                "safe_decision": int(s["decision"]),
            }
        )
    return pd.DataFrame(pairs)


def pair_metrics(rows: pd.DataFrame) -> dict | None:
    """Pair accuracy and flip sensitivity overall and per category; None when the rows hold no complete pair."""
    table = pair_table(rows)
    if table.empty:
        return None

    def block(part: pd.DataFrame, name: str) -> dict:
        both_right = (part["unsafe_decision"] == 1) & (part["safe_decision"] == 0)
        return {
            "pairs": int(len(part)),
            "pair_accuracy": float(both_right.mean()),
            "flip_sensitivity": float((part["unsafe_score"] > part["safe_score"]).mean()),
            "mean_score_gap": float((part["unsafe_score"] - part["safe_score"]).mean()),
        }

    return grouped(table, block, by=("category",))
