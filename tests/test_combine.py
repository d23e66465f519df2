"""Combinators against their rules applied by hand to the parts' own predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import MeanRedClassifier
from imagesafety.classifiers.base import Prediction, decide


class MeanGreen(MeanRedClassifier):
    """Unsafe score = mean green / 255, counting the images it sees."""

    name = "mean-green"

    def predict(self, images):
        self.calls += 1
        self.images_seen += len(images)
        out = []
        for img in images:
            score = float(np.asarray(img, dtype=np.float64)[..., 1].mean() / 255)
            out.append(Prediction(score, decide(score, 0.2), {"sexual": score}, {}))
        return out


@pytest.fixture
def parts(monkeypatch):
    """`red` and `green` as registered classifiers, the same objects each time (to count their calls)."""
    from imagesafety import registry

    made = {"red": MeanRedClassifier(), "green": MeanGreen()}
    made["green"].threshold = 0.2
    entries = registry.entries

    def with_parts(kind):
        found = entries(kind)
        if kind != "classifier":
            return found
        return {
            **found,
            **{
                name: registry.Entry("classifier", name, lambda arg=None, c=c, **kw: c, "test part")
                for name, c in made.items()
            },
        }

    monkeypatch.setattr(registry, "entries", with_parts)
    return made


def colourful(tmp_path):
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for label in ("safe", "unsafe"):
        (root / label).mkdir(parents=True)
    for i in range(24):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), colour).save(buf, "PNG")
        (root / ("unsafe" if i % 2 else "safe") / f"{i}.png").write_bytes(buf.getvalue())
    return root


def test_cascade_equals_the_rule_applied_by_hand_and_runs_the_second_stage_only_in_the_band(tmp_path, parts):
    from imagesafety import evaluate

    root = colourful(tmp_path)
    red = evaluate("red", root, None, cache=None, progress=False, n_boot=10).predictions.set_index("id")
    green = evaluate("green", root, None, cache=None, progress=False, n_boot=10).predictions.set_index("id")
    parts["green"].images_seen = 0
    result = evaluate(
        "cascade:red>green", root, None, cache=None, progress=False, n_boot=10, classifier_options={"band": "0.3:0.7"}
    )
    rows = result.predictions.set_index("id")
    in_band = red["score"].between(0.3, 0.7)
    expected_score = np.where(in_band, green["score"], red["score"])
    expected_decision = np.where(in_band, green["classifier_decision"], red["classifier_decision"])
    assert np.allclose(rows.loc[red.index, "score"], expected_score)
    assert (rows.loc[red.index, "classifier_decision"].to_numpy() == expected_decision).all()
    assert parts["green"].images_seen == int(in_band.sum()) > 0
    decided = rows["raw"].map(lambda r: json.loads(r)["decided_by"])
    assert (decided.loc[red.index] == np.where(in_band, "mean-green", "mean-red")).all()
    summary = result.metrics["classifier_summary"]
    assert (
        summary["stages"]["mean-green"]["images"] == int(in_band.sum())
        and summary["stages"]["mean-red"]["images"] == 24
    )


def test_vote_max_mean_equal_their_rules(tmp_path, parts):
    from imagesafety import evaluate

    root = colourful(tmp_path)
    red = evaluate("red", root, None, cache=None, progress=False, n_boot=10).predictions.set_index("id")
    green = evaluate("green", root, None, cache=None, progress=False, n_boot=10).predictions.set_index("id")
    for spec in ("vote:2/2:red,green", "vote:1/2:red,green", "max:red,green", "mean:red,green"):
        rows = (
            evaluate(spec, root, None, cache=None, progress=False, n_boot=10).predictions.set_index("id").loc[red.index]
        )
        votes = red["classifier_decision"].to_numpy() + green["classifier_decision"].to_numpy()
        if spec.startswith("vote"):
            k = int(spec[5])
            assert (rows["classifier_decision"].to_numpy() == (votes >= k)).all(), spec
        elif spec.startswith("max"):
            assert np.allclose(rows["score"], np.maximum(red["score"], green["score"]))
            assert (rows["classifier_decision"].to_numpy() == (votes >= 1)).all()
        else:
            assert np.allclose(rows["score"], (red["score"] + green["score"]) / 2)


@pytest.mark.parametrize(
    "spec, options, words",
    [
        ("cascade:red>nope", {}, "unknown classifier 'nope'"),
        ("cascade:red>green", {"band": "0.5:1.5"}, "0 <= LO <= HI <= 1"),
        ("vote:3/2:red,green", {}, "N=2 but|K must be between 1 and N"),
        ("vote:2/3:red,green", {}, "N=3 but 2 classifiers"),
        ("max:red", {}, "at least two classifiers"),
    ],
)
def test_bad_combinations_fail_before_any_model_runs(parts, spec, options, words):
    import re

    from imagesafety import registry

    with pytest.raises(ValueError) as info:
        registry.build("classifier", spec, **options)
    assert re.search(words, str(info.value)), str(info.value)
    assert parts["red"].images_seen == 0


def test_vote_refuses_parts_with_disjoint_coverage():
    from imagesafety.classifiers.combine import Combined

    class A(MeanRedClassifier):
        covers = frozenset({"sexual"})

    class B(MeanRedClassifier):
        covers = frozenset({"violence"})

    with pytest.raises(ValueError, match="do not overlap"):
        Combined("vote", [A(), B()], k=1)


def test_a_combination_pays_for_the_answers_of_every_part_it_asked(parts, monkeypatch):
    """Parts that report usage (as VLMs do): a cascade's image costs the stages it went through, a vote all parts."""
    from PIL import Image

    from imagesafety import registry
    from imagesafety.classifiers.base import Usage

    def priced(clf, cost):
        inner = clf.predict

        def predict(images):
            return [
                Prediction(p.unsafe_score, p.decision, p.category_scores, p.raw, usage=Usage(10, 1, cost))
                for p in inner(images)
            ]

        monkeypatch.setattr(clf, "predict", predict)

    priced(parts["red"], 0.25)
    priced(parts["green"], 1.0)
    dark, middling = Image.new("RGB", (8, 8), (0, 0, 0)), Image.new("RGB", (8, 8), (128, 128, 0))
    cascade = registry.build("classifier", "cascade:red>green", band="0.3:0.7")
    first, second = cascade.predict([dark, middling])  # red 0 leaves the band at once; red 0.5 goes on to green
    assert first.usage == Usage(10, 1, 0.25) and second.usage == Usage(20, 2, 1.25)
    both = registry.build("classifier", "max:red,green").predict([dark])[0]
    assert both.usage == Usage(20, 2, 1.25)


def test_a_prediction_is_cached_as_its_fields_and_read_back_whole():
    """`to_dict` (written field by field for speed) gives what `dataclasses.asdict` gives, less the unset optional
    fields (no category scores, no raw output, views or usage), and does not share the raw output with the
    prediction."""
    from dataclasses import asdict

    from imagesafety.classifiers.base import Usage
    from imagesafety.media.policy import Sampling, ViewScore, ViewsReport

    deciding = ViewScore(3, 0.3, "black", 0.9)
    views = ViewsReport(Sampling("animation", 8, [0, 3, 7], "all", None, 4, 4), "max", [deciding], deciding, 1)
    full = Prediction(0.9, 1, {"sexual": 0.9}, {"boxes": [[1, 2], [3, 4]]}, views, Usage(10, 2, 0.5))
    assert full.to_dict() == asdict(full)
    assert Prediction.from_dict(json.loads(json.dumps(full.to_dict()))) == full
    full.to_dict()["raw"]["boxes"].append([0, 0])
    assert full.raw == {"boxes": [[1, 2], [3, 4]]}
    plain = Prediction(0.1, 0, {}, None)
    assert plain.to_dict() == {"unsafe_score": 0.1, "decision": 0}  # empty scores and no raw output left out
    assert Prediction.from_dict(plain.to_dict()) == plain
