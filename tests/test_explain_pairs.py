"""Pairs cut from the evidence, and explanations checked against pairs (the pixels that differ are the ground truth)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from planted import PlantedPatchClassifier
from test_explain import photos


def write_unsafe(root, n=3, patch=14):
    folder = root / "unsafe" / "sexual"
    folder.mkdir(parents=True)
    (root / "safe").mkdir()
    truths = {}
    for i, (image, truth) in enumerate(photos(n, seed=7, patch=patch)):
        image.save(folder / f"{i}.png")
        truths[f"{i}.png"] = truth
    return truths


def test_pairs_from_evidence_cover_the_patch_and_flip(tmp_path):
    from imagesafety.pairs.editors import MaskCompositeEditor
    from imagesafety.pairs.evidence_region import EvidenceRegionEditor
    from imagesafety.pairs.generate import generate_pairs

    truths = write_unsafe(tmp_path / "data")
    judge = PlantedPatchClassifier(gain=60.0, threshold=0.1)  # flipping it takes nearly the whole patch
    editor = EvidenceRegionEditor(
        MaskCompositeEditor(blur=6.0), PlantedPatchClassifier(gain=60.0, threshold=0.1), margin=0.03
    )
    stats = generate_pairs(
        tmp_path / "data", tmp_path / "pairs", editor, judge, policy="unsafebench", seeds=1, progress=False
    )
    assert stats.kept >= len(truths)
    candidates = [json.loads(line) for line in (tmp_path / "pairs" / "candidates.jsonl").read_text().splitlines()]
    kept = [c for c in candidates if c["kept"]]
    assert {c["source_image"] for c in kept} == set(truths)
    for image_name, truth in truths.items():
        box = editor.box_for(
            __import__("PIL.Image", fromlist=["Image"])
            .open(tmp_path / "data" / "unsafe" / "sexual" / image_name)
            .convert("RGB")
        )
        from PIL import Image

        w, h = Image.open(tmp_path / "data" / "unsafe" / "sexual" / image_name).size
        x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
        assert x0 <= truth[0] and y0 <= truth[1] and x1 >= truth[2] and y1 >= truth[3]  # the region covers the patch
        assert (x1 - x0) * (y1 - y0) < 0.2 * w * h
    for c in kept:
        assert c["scores"]["judge_edited"] < 0.1 <= c["scores"]["judge_original"]
    table = pd.read_parquet(tmp_path / "pairs" / "pairs.parquet")
    assert set(table["role"]) == {"original", "edited"}


def test_region_from_evidence_needs_a_region_editor():
    from imagesafety.pairs.editors import DiffusersEditor
    from imagesafety.pairs.evidence_region import EvidenceRegionEditor

    editor = DiffusersEditor.__new__(DiffusersEditor)
    editor.name = "diffusers:x"
    with pytest.raises(ValueError, match="does not edit a region"):
        EvidenceRegionEditor(editor, PlantedPatchClassifier())


def test_pairs_generate_cli_with_evidence_region(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imagesafety import registry
    from imagesafety.cli import app
    from planted import register_planted

    register_planted(monkeypatch)
    try:
        write_unsafe(tmp_path / "data", n=2, patch=18)  # flagged by the plug-in's default gain, not saturated
        args = [
            "pairs",
            "generate",
            "-d",
            str(tmp_path / "data"),
            "-o",
            str(tmp_path / "pairs"),
            "--judge",
            "planted",
            "--policy",
            "unsafebench",
            "--region",
            "evidence:planted",
            "--no-lpips",
            "--seeds",
            "1",
            "-q",
            "--editor-option",
            "fill=128,128,128",
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "pairs kept" in result.output
        bad = CliRunner().invoke(app, [*args[:-2], "--region", "box:0,0,1,1"])
        assert bad.exit_code == 2 and "--region takes evidence:SPEC" in bad.output
    finally:
        registry._plugins.cache_clear()


def test_explain_on_a_pair_dataset_scores_evidence_inside_the_difference(tmp_path):
    from PIL import Image

    from imagesafety.evidence.report import run_explain
    from planted import plant, scene

    rows = []
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    boxes = [(10, 10, 24, 24), (50, 30, 64, 44), (30, 40, 44, 54)]
    for i, box in enumerate(boxes):
        base = scene(rng, (80, 64))
        Image.fromarray(base).save(tmp_path / "img" / f"{i}-safe.png")
        Image.fromarray(plant(base, box)).save(tmp_path / "img" / f"{i}-unsafe.png")
        rows += [
            {"path": f"img/{i}-safe.png", "label": 0, "pair_id": f"p{i}", "role": "edited", "category": "sexual"},
            {"path": f"img/{i}-unsafe.png", "label": 1, "pair_id": f"p{i}", "role": "original", "category": "sexual"},
        ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table, page = run_explain(
        [PlantedPatchClassifier(gain=15.0)],
        tmp_path / "pairs.jsonl",
        tmp_path / "out",
        method="occlusion",
        window=8,
        stride=4,
    )
    unsafe = table[table["pair_mass_inside"].notna()]
    assert len(unsafe) == 3 and unsafe["pair_pointing_hit"].all() and (unsafe["pair_mass_inside"] > 0.5).all()
    assert "pointing game" in page.read_text()
    # a map that ignores the image fails the check
    from imagesafety.evidence.report import pair_check

    hit, mass = pair_check(
        np.random.default_rng(1).random((64, 80)).astype(np.float32),
        Image.open(tmp_path / "img" / "0-unsafe.png"),
        Image.open(tmp_path / "img" / "0-safe.png"),
    )
    assert mass < 0.2
