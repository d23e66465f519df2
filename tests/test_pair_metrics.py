"""Pair metrics against hand-computed examples, and their place in eval's outputs."""

import json

import pandas as pd
import pytest

from conftest import MeanRedClassifier, jpeg_bytes
from imagesafety.bench.pair_metrics import pair_metrics


def rows(pairs):
    out = []
    for pid, category, (s_score, s_dec), (u_score, u_dec) in pairs:
        out.append(
            {
                "id": f"{pid}-safe",
                "pair_id": pid,
                "category": category,
                "label": 0,
                "score": s_score,
                "decision": s_dec,
                "error": None,
            }
        )
        out.append(
            {
                "id": f"{pid}-unsafe",
                "pair_id": pid,
                "category": category,
                "label": 1,
                "score": u_score,
                "decision": u_dec,
                "error": None,
            }
        )
    return pd.DataFrame(out)


def test_hand_computed_pairs():
    frame = rows(
        [
            ("p1", "hate", (0.1, 0), (0.9, 1)),  # both right, moves the right way
            ("p2", "hate", (0.6, 1), (0.8, 1)),  # safe one wrong, still moves the right way
            ("p3", "violence", (0.7, 1), (0.2, 0)),  # both wrong, moves the wrong way
            ("p4", "violence", (0.3, 0), (0.3, 0)),  # tie: unsafe not higher
        ]
    )
    frame = pd.concat(
        [
            frame,
            pd.DataFrame(
                [
                    {
                        "id": "lonely",
                        "pair_id": "p5",
                        "category": "hate",
                        "label": 1,
                        "score": 0.9,
                        "decision": 1,
                        "error": None,
                    }
                ]
            ),
        ]
    )
    m = pair_metrics(frame)
    assert m["overall"] == {
        "pairs": 4,
        "pair_accuracy": 0.25,
        "flip_sensitivity": 0.5,
        "mean_score_gap": pytest.approx((0.8 + 0.2 - 0.5 + 0) / 4),
    }
    assert m["by_category"]["hate"]["pair_accuracy"] == 0.5 and m["by_category"]["violence"]["flip_sensitivity"] == 0.0
    assert pair_metrics(frame.assign(pair_id=None)) is None


def test_eval_reports_pairs_from_a_pair_manifest(tmp_path):
    from imagesafety.bench.evaluate import evaluate

    (tmp_path / "img").mkdir()
    lines = []
    for i, (safe_red, unsafe_red) in enumerate([(40, 220), (90, 240), (230, 60)]):
        for role, label, red in (("original", 1, unsafe_red), ("edited", 0, safe_red)):
            name = f"img/{i}-{role}.jpg"
            (tmp_path / name).write_bytes(jpeg_bytes((red, 10, 10)))
            lines.append(
                json.dumps({"path": name, "label": label, "category": "violence", "pair_id": f"pair{i}", "role": role})
            )
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines))
    result = evaluate(
        MeanRedClassifier(), tmp_path / "pairs.jsonl", tmp_path / "out", cache=None, progress=False, n_boot=10
    )
    assert result.metrics["pairs"]["overall"]["pairs"] == 3
    assert result.metrics["pairs"]["overall"]["flip_sensitivity"] == pytest.approx(2 / 3)
    assert result.metrics["pairs"]["overall"]["pair_accuracy"] == pytest.approx(2 / 3)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Counterfactual pairs" in html and "pair0" in html
