"""The published benchmarks' loaders: generated files in each benchmark's own schema read back as the right samples."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imagesafety.data import load_dataset


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 20), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def hub_folder(root, split: str, frame: pd.DataFrame):
    """A local copy of a Hugging Face dataset as the Hub stores it: data/{split}-00000-of-00001.parquet."""
    (root / "data").mkdir(parents=True)
    frame.to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def test_vlsu_reads_the_image_grade_as_the_label_and_keeps_the_rest(tmp_path):
    (tmp_path / "img").mkdir()
    for name, colour in (("a.png", (200, 0, 0)), ("b.png", (0, 200, 0)), ("c.png", (0, 0, 200))):
        (tmp_path / "img" / name).write_bytes(png(colour))
    rows = [
        ("u1", "img/a.png", "unsafe", "C6: Adult Explicit Sexual Material", "safe", "unsafe"),
        ("u2", "img/b.png", "safe", "C9: Interpersonal Violence", "unsafe", "unsafe"),
        ("u3", "img/c.png", "borderline", "C3: Drug Abuse", "safe", "borderline"),
        ("u4", "https://images.example/x.jpg", "not_sure", "C12: Terrorism and Violent Extremism", "safe", "safe"),
    ]
    frame = pd.DataFrame(
        [
            {
                "prompt": f"text {i}",
                "web_path": path,
                "combined_category": cat,
                "uuid": uid,
                "image_grade": grade,
                "consensus_text_grade": text,
                "consensus_combined_grade": joint,
                "image_category": cat,
                "text_category": cat,
            }
            for i, (uid, path, grade, cat, text, joint) in enumerate(rows)
        ]
    )
    frame.to_csv(tmp_path / "VLSU.csv", index=False)
    samples = list(load_dataset(f"vlsu:{tmp_path / 'VLSU.csv'}"))
    assert [s.id for s in samples] == ["u1", "u2", "u3", "u4"]
    assert [s.label for s in samples] == [1, 0, None, None]  # borderline / not sure: unlabelled, not guessed
    assert [s.category for s in samples] == ["c6", "c9", "c3", "c12"]
    assert samples[0].metadata["combined_grade"] == "unsafe" and samples[2].metadata["image_grade"] == "borderline"
    assert samples[3].image == "https://images.example/x.jpg"  # a URL: fetched through the guarded fetcher when read
    assert samples[1].load_bytes() == png((0, 200, 0))
    from imagesafety.taxonomy import VLSU

    assert all(VLSU.get(s.category) for s in samples)


def test_vlsu_without_its_columns_names_them(tmp_path):
    (tmp_path / "other.csv").write_text("path,label\na.png,1\n")
    with pytest.raises(ValueError, match=r"line 2: no column uuid, web_path, image_grade"):
        list(load_dataset(f"vlsu:{tmp_path / 'other.csv'}"))
    with pytest.raises(ValueError, match="no such CSV file"):
        load_dataset(f"vlsu:{tmp_path / 'missing.csv'}")


def test_unsafeconcepts_rows_are_all_unsafe_with_their_concept(tmp_path):
    pytest.importorskip("datasets")
    frame = pd.DataFrame(
        {
            "image": [{"bytes": png((255, 0, 0)), "path": None}, {"bytes": png((0, 0, 255)), "path": None}],
            "category": ["Hate", "Violence"],
            "unsafe_concept": ["Swastika", "Blood"],
        }
    )
    samples = list(load_dataset(f"unsafeconcepts:{hub_folder(tmp_path / 'uc', 'train', frame)}"))
    assert [s.label for s in samples] == [1, 1]
    assert [s.category for s in samples] == ["hate", "violence"]
    assert [s.metadata["unsafe_concept"] for s in samples] == ["Swastika", "Blood"]
    assert samples[0].split == "train" and samples[1].load_bytes() == png((0, 0, 255))


def test_safeeditbench_becomes_pairs_per_policy_and_pair_metrics_run(tmp_path, red_classifier):
    pytest.importorskip("datasets")
    from imagesafety.bench.evaluate import evaluate

    red, green = png((230, 10, 10)), png((10, 230, 10))
    rows = []
    for level in range(5):  # ClassLabel columns arrive as integers
        rows.append(
            {
                "image": {"bytes": red, "path": "x.jpg"},
                "image_path": "x.jpg",
                "safety_label": int(level >= 1),
                "policy_name": level,
                "policy": f"policy text {level}",
            }
        )
        rows.append(
            {
                "image": {"bytes": green, "path": "x_edited.jpg"},
                "image_path": "x_edited.jpg",
                "safety_label": 0,
                "policy_name": level,
                "policy": f"policy text {level}",
            }
        )
    root = hub_folder(tmp_path / "seb", "test", pd.DataFrame(rows))
    samples = list(load_dataset(f"safeeditbench:{root}"))
    assert len({s.id for s in samples}) == 10
    by_id = {s.id: s for s in samples}
    original, edited = by_id["x.jpg@Policy L3"], by_id["x_edited.jpg@Policy L3"]
    assert (original.pair_id, original.role, original.label) == ("x@Policy L3", "original", 1)
    assert (edited.pair_id, edited.role, edited.label) == ("x@Policy L3", "edited", 0)
    assert {s.category for s in samples} == {f"policy_l{i}" for i in range(1, 6)}
    result = evaluate(red_classifier, f"safeeditbench:{root}", None, cache=None, progress=False, n_boot=10)
    pairs = result.metrics["pairs"]
    assert pairs["overall"]["pairs"] == 4  # under Policy L1 both images are safe: no flipped pair there
    assert pairs["overall"]["pair_accuracy"] == 1.0


def test_vlguard_reads_its_json_and_image_folders(tmp_path):
    root = tmp_path / "VLGuard"
    for split, items in {
        "train": [
            {
                "id": "t1",
                "image": "bad_ads/a.png",
                "safe": False,
                "harmful_category": "Deception",
                "harmful_subcategory": "Disinformation",
                "instr-resp": [{"instruction": "q", "response": "r"}],
            },
            {"id": "t2", "image": "safe/b.png", "safe": True, "instr-resp": []},
        ],
        "test": [
            {
                "id": "s1",
                "image": "privacy/c.png",
                "safe": False,
                "harmful_category": "Privacy",
                "harmful_subcategory": "Personal data",
                "instr-resp": [],
            }
        ],
    }.items():
        for item in items:
            path = root / split / item["image"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png((5, 5, 5)))
        (root / f"{split}.json").write_text(json.dumps(items))
    samples = list(load_dataset(f"vlguard:{root}"))
    assert [(s.id, s.split, s.label, s.category) for s in samples] == [
        ("t1", "train", 1, "deception"),
        ("t2", "train", 0, None),
        ("s1", "test", 1, "privacy"),
    ]
    assert samples[0].metadata["harmful_subcategory"] == "Disinformation"
    assert samples[2].load_bytes() == png((5, 5, 5))
    assert [s.id for s in load_dataset(f"vlguard:{root}", splits=["test"])] == ["s1"]
    with pytest.raises(ValueError, match=r"VLGuard: no split \['validation'\]"):
        load_dataset(f"vlguard:{root}", splits=["validation"])


def test_gated_benchmarks_fail_fast_offline_in_one_line(monkeypatch, tmp_path):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("IMAGESAFETY_CACHE", str(tmp_path / "cache.sqlite"))
    with pytest.raises(ValueError, match=r"cannot load VLGuard from 'ys-zong/VLGuard'.*offline, pass a folder") as info:
        load_dataset("vlguard")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="tyodd/SafeEditBench"):
        list(load_dataset("safeeditbench"))


def test_named_benchmarks_are_listed_with_their_taxonomies():
    from imagesafety.data import NAMED_DATASETS
    from imagesafety.taxonomy import load_taxonomy

    assert {"vlsu", "unsafeconcepts", "safeeditbench", "vlguard"} <= set(NAMED_DATASETS)
    assert [c.code for c in load_taxonomy("vlsu").categories][:3] == ["C1", "C2", "C3"]
    assert len(load_taxonomy("safeeditbench").categories) == 5 and len(load_taxonomy("vlguard").categories) == 4
    np.testing.assert_equal(len(load_taxonomy("vlsu").categories), 15)


def safewatch_folder(root, videos: dict[str, bytes]):
    """SafeWatch-Bench in its authors' layout: {real,genai}/C*/<subcategory>_benchmark.json lists of
    {video_path, labels}, the paths relative to the folder above the benchmark (as their scripts are run)."""
    layout = {
        ("real", "C1", "evident"): [("v1.mp4", [1]), ("v2.mp4", [1, 3])],
        ("real", "C1", "benign"): [("b1.mp4", [])],
        ("genai", "C3", "shooting"): [("g1.mp4", [3])],
    }
    for (subset, code, sub), items in layout.items():
        folder = root / subset / code / sub
        folder.mkdir(parents=True)
        for name, _ in items:
            (folder / name).write_bytes(videos.get(name, b"\x00\x00\x00\x18ftypmp42"))
        listing = [{"video_path": f"./bench/{subset}/{code}/{sub}/{n}", "labels": labels} for n, labels in items]
        (root / subset / code / f"{sub}_benchmark.json").write_text(json.dumps(listing))
    return root


def test_safewatch_reads_its_authors_layout_sources_and_categories(tmp_path):
    root = safewatch_folder(tmp_path / "bench", {})
    samples = {s.id.rsplit("/", 1)[-1]: s for s in load_dataset(f"safewatch:{root}")}
    got = {
        k: (s.label, s.category, s.source, s.metadata["subcategory"], s.metadata["labels"]) for k, s in samples.items()
    }
    assert got == {
        "v1.mp4": (1, "c1", "real", "evident", "C1"),
        "v2.mp4": (1, "c1", "real", "evident", "C1,C3"),  # the folder's category first, every label kept
        "b1.mp4": (0, None, "real", "benign", ""),
        "g1.mp4": (1, "c3", "generated", "shooting", "C3"),
    }
    assert samples["g1.mp4"].load_bytes().startswith(b"\x00\x00\x00\x18ftyp")
    assert [s.source for s in load_dataset(f"safewatch:{root / 'genai'}")] == ["generated"]


def test_safewatch_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"SafeWatch-Bench: .*missing: no such folder. It is gated"):
        load_dataset(f"safewatch:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"has no C1..C6/\*.json under real/ or genai/"):
        load_dataset(f"safewatch:{tmp_path / 'empty'}")
    root = safewatch_folder(tmp_path / "bench", {})
    (root / "real" / "C1" / "evident_benchmark.json").write_text(json.dumps([{"video_path": "x.mp4", "labels": [7]}]))
    with pytest.raises(ValueError, match=r"evident_benchmark.json item 0: labels must be a list of category numbers"):
        list(load_dataset(f"safewatch:{root}"))


def test_safewatch_videos_are_classified_frame_by_frame_per_source(tmp_path, monkeypatch):
    """Known answer: the planted-patch classifier fires on the videos showing the patch, and nowhere else."""
    pytest.importorskip("av")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from imagesafety.bench.evaluate import evaluate
    from planted import register_planted, video_bytes

    register_planted(monkeypatch)
    planted = video_bytes(seconds=3, planted_from=1.0, planted_to=1.5)
    clean = video_bytes(seconds=3, planted_from=9.0, planted_to=9.5)
    root = safewatch_folder(
        tmp_path / "bench", {"v1.mp4": planted, "v2.mp4": planted, "g1.mp4": planted, "b1.mp4": clean}
    )
    result = evaluate("planted", f"safewatch:{root}", tmp_path / "run", cache=None)
    rows = pd.read_parquet(tmp_path / "run" / "predictions.parquet").set_index("id")
    decided = {i.rsplit("/", 1)[-1]: int(d) for i, d in rows["classifier_decision"].items()}
    assert decided == {"v1.mp4": 1, "v2.mp4": 1, "b1.mp4": 0, "g1.mp4": 1}
    assert result.metrics["overall"]["accuracy"]["value"] == 1.0
    assert set(result.metrics["by_source"]) == {"real", "generated"}
