"""Policy files: validation, equality with the inline combination, fitting from runs, and serving with grades."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_combine import colourful, parts  # noqa: F401  (fixture)


def write(path, text):
    path.write_text(text)
    return path


def test_policy_equals_the_inline_combination_with_the_same_thresholds(tmp_path, parts):  # noqa: F811
    from imagesafety import evaluate

    root = colourful(tmp_path)
    policy = write(
        tmp_path / "p.yaml",
        "name: p\nclassifiers: [red, green]\ncombine: cascade\nband: '0.3:0.7'\n"
        "thresholds: {unsafe: 0.4, sexual: 0.4}\ngrades: {scheme: likelihood, bands: [0.2, 0.4, 0.6, 0.8]}\n",
    )
    via_policy = evaluate(f"policy:{policy}", root, None, cache=None, progress=False, n_boot=10).predictions.set_index(
        "id"
    )
    inline = evaluate(
        "cascade:red>green",
        root,
        None,
        cache=None,
        progress=False,
        n_boot=10,
        classifier_options={"band": "0.3:0.7"},
        threshold=0.4,
    ).predictions.set_index("id")
    assert np.allclose(via_policy["score"], inline.loc[via_policy.index, "score"])
    assert (via_policy["classifier_decision"] == (inline.loc[via_policy.index, "score"] >= 0.4).astype(int)).all()
    grades = via_policy["raw"].map(lambda r: json.loads(r)["grades"]["sexual"])
    expected = inline.loc[via_policy.index, "score"].map(
        lambda s: ["VERY_UNLIKELY", "UNLIKELY", "POSSIBLE", "LIKELY", "VERY_LIKELY"][
            int(np.searchsorted([0.2, 0.4, 0.6, 0.8], s, side="right"))
        ]
    )
    assert (grades == expected).all()


@pytest.mark.parametrize(
    "text, words",
    [
        ("classifiers: [red]\nthreshold: {unsafe: 0.5}\n", "unknown field 'threshold'; did you mean 'thresholds'?"),
        ("classifiers: [red, green]\ncombine: average\n", "combine: 'average' is not one of"),
        ("classifiers: [red, green]\ncombine: vote\nk: 3\n", "k: vote needs 1 <= k <= 2"),
        ("classifiers: [red]\nthresholds: {unsafe: 1.5}\n", "thresholds: a mapping of category -> a number in [0, 1]"),
        ("classifiers: [red]\ngrades: {scheme: severity, bands: [0.5]}\n", "bands must be 3 increasing numbers"),
        ("classifiers: [{spec: red, calibrate: x}]\n", "classifiers[0]: unknown field 'calibrate'"),
    ],
)
def test_a_policy_with_a_mistake_is_one_line_naming_the_field(tmp_path, parts, text, words):  # noqa: F811
    from typer.testing import CliRunner

    from imagesafety.cli import app

    policy = write(tmp_path / "bad.yaml", text)
    result = CliRunner().invoke(
        app, ["eval", "-c", f"policy:{policy}", "-d", str(colourful(tmp_path)), "--no-cache", "-q"]
    )
    assert result.exit_code == 2 and words in " ".join(result.output.split()), result.output
    assert str(policy) in " ".join(result.output.split()).replace(" ", "") or "bad.yaml" in result.output
    assert parts["red"].images_seen == 0


def test_policy_fit_from_runs_reaches_its_target_on_the_fitting_split(tmp_path, parts):  # noqa: F811
    from imagesafety import evaluate
    from imagesafety.policy import fit_policy, read_policy
    from test_calibration import write_splits

    write_splits(tmp_path / "data", unsafe_red=160, safe_red=100, spread=30, random_green=True)
    evaluate("red", tmp_path / "data", tmp_path / "runs" / "red", cache=None, progress=False, n_boot=10)
    evaluate("green", tmp_path / "data", tmp_path / "runs" / "green", cache=None, progress=False, n_boot=10)
    fitted = fit_policy([tmp_path / "runs" / "red", tmp_path / "runs" / "green"], "fpr:0.1", tmp_path / "policy.yaml")
    again = read_policy(tmp_path / "policy.yaml")
    assert again.combine == "max" and again.thresholds == pytest.approx(fitted.thresholds)
    result = evaluate(
        f"policy:{tmp_path / 'policy.yaml'}",
        tmp_path / "data",
        None,
        cache=None,
        progress=False,
        n_boot=10,
        split="validation",
    )
    rows = result.predictions
    fpr = ((rows["classifier_decision"] == 1) & (rows["label"] == 0)).sum() / (rows["label"] == 0).sum()
    assert fpr <= 0.1 + 1e-9


def test_serve_a_policy_answers_its_decisions_and_grades(tmp_path, parts):  # noqa: F811
    pytest.importorskip("fastapi")
    import httpx

    from conftest import jpeg_bytes
    from imagesafety.policy import build_policy, read_policy
    from imagesafety.serve import ServeConfig
    from serve_helpers import image_input, running_server

    policy_file = write(
        tmp_path / "p.yaml",
        "name: p\nclassifiers: [red]\nthresholds: {unsafe: 0.5, sexual: 0.3}\n"
        "grades: {scheme: severity, bands: [0.25, 0.5, 0.75]}\n",
    )
    policy = read_policy(policy_file)
    clf = build_policy(policy)
    config = ServeConfig(
        api_keys={"k": "policy-key"}, audit_url=f"sqlite:///{tmp_path / 'a.sqlite'}", thresholds=policy.thresholds
    )
    with running_server(config, {"p": clf}) as (url, _, _):
        for colour in ((90, 0, 0), (200, 0, 0)):
            direct = clf.predict(
                [
                    __import__("PIL.Image", fromlist=["Image"])
                    .open(__import__("io").BytesIO(jpeg_bytes(colour)))
                    .convert("RGB")
                ]
            )[0]
            r = httpx.post(
                f"{url}/v1/moderations",
                json={"input": [image_input(jpeg_bytes(colour))]},
                headers={"Authorization": "Bearer policy-key"},
            )
            result = r.json()["results"][0]
            assert result["flagged"] == bool(direct.decision)
            assert result["imagesafety"]["images"][0]["grades"] == direct.raw["grades"]
