"""Replaying recorded VLM responses: UnsafeBench's published layout matched to a local copy of yiting/UnsafeBench by the
authors' file naming, voted, and scored; the F1 checked against scikit-learn on labels parsed independently here."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

pytest.importorskip("datasets")

from imagesafety.bench.evaluate import evaluate  # noqa: E402
from imagesafety.classifiers.replay import ReplayError  # noqa: E402

# response text -> what it says (1 unsafe, 0 safe, None unsure), as a reader would take it
PHRASES = {
    "unsafe": 1,
    "Unsafe.": 1,
    "The image is unsafe.": 1,
    "safe": 0,
    "Safe": 0,
    "This image is safe.": 0,
    "I cannot tell.": None,
}
CATEGORIES = ["Hate", "Sexual", "Violence"]
SOURCES = ["Laion5B", "Lexica"]


def png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def unsafebench_copy(root, n_train=30, n_test=12, seed=0):
    """A local copy of the dataset's data files (train then test), in its schema."""
    rng = np.random.default_rng(seed)
    frames = {}
    for split, n in (("train", n_train), ("test", n_test)):
        frames[split] = pd.DataFrame(
            {
                "image": [{"bytes": png(hash((split, i)) % 10_000), "path": None} for i in range(n)],
                "safety_label": rng.choice(["Safe", "Unsafe"], n),
                "category": rng.choice(CATEGORIES, n),
                "source": rng.choice(SOURCES, n),
                "text": ["t"] * n,
            }
        )
    (root / "data").mkdir(parents=True)
    for split, frame in frames.items():
        frame.to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")
    return frames


def published_responses(root, frames, skip=(), extra=3, seed=1):
    """The published layout for one model: three prompts, one file per (source, category), the authors' image names.
    Returns what each row's responses say (for the independent computation)."""
    rng = np.random.default_rng(seed)
    said = {}
    files: dict[tuple[int, str], list] = {}
    phrases = list(PHRASES)
    for split, frame in frames.items():
        for i, row in frame.iterrows():
            if (split, i) in skip:
                continue
            name = f"data/UnsafeBench/{split}/images/{i}.png"
            texts = [phrases[k] for k in rng.integers(0, len(phrases), 3)]
            said[(split, i)] = [PHRASES[t] for t in texts]
            for prompt, text in enumerate(texts):
                files.setdefault((prompt, f"{row.source}_{row.category}"), []).append(
                    {"image_fname": name, "response": text}
                )
    for k in range(extra):  # responses for images the dataset copy does not have
        files.setdefault((0, "Laion5B_Hate"), []).append(
            {"image_fname": f"data/UnsafeBench/train/images/{900 + k}.png", "response": "safe"}
        )
    for (prompt, stem), items in files.items():
        folder = root / "gpt-4v" / f"prompt_{prompt}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.json").write_text(json.dumps(items))
    return said


@pytest.fixture
def replay_setup(tmp_path):
    frames = unsafebench_copy(tmp_path / "UnsafeBench")
    said = published_responses(tmp_path / "responses", frames, skip={("train", 3), ("test", 5)})
    return tmp_path, frames, said


def expected_decisions(said):
    """Majority of the three answers, an unsure answer counting as unsafe (the default unsure policy)."""
    return {key: int(sum(1 if v is None else v for v in votes) / len(votes) >= 0.5) for key, votes in said.items()}


def test_replayed_responses_reproduce_scikit_learns_f1(replay_setup):
    tmp_path, frames, said = replay_setup
    result = evaluate(
        f"replay:{tmp_path / 'responses'}",
        f"hf:{tmp_path / 'UnsafeBench'}",
        tmp_path / "run",
        n_boot=10,
        progress=False,
    )
    decisions = expected_decisions(said)
    rows = []
    for split, frame in frames.items():
        for i, row in frame.iterrows():
            if (split, i) in decisions:
                rows.append((row.category.lower(), int(row.safety_label == "Unsafe"), decisions[(split, i)]))
    truth = pd.DataFrame(rows, columns=["category", "label", "decision"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["overall"]["f1"]["value"] == pytest.approx(f1_score(truth["label"], truth["decision"]))
    for category, part in truth.groupby("category"):
        assert metrics["by_category"][category]["f1"]["value"] == pytest.approx(
            f1_score(part["label"], part["decision"], zero_division=np.nan), nan_ok=True
        )
    summary = metrics["classifier_summary"]
    assert summary["rows_without_response"] == 2 and summary["responses_matching_no_row"] == 3
    assert summary["matched_rows"] == len(said) and summary["category_mismatches"] == 0
    assert any("2 rows had no recorded response" in w for w in result.warnings)
    assert any("3 recorded responses matched no evaluated row" in w for w in result.warnings)
    assert metrics["classifier"]["name"] == "replay:gpt-4v"


def test_rows_in_another_order_are_flagged_by_their_categories(replay_setup):
    tmp_path, frames, said = replay_setup
    shuffled = tmp_path / "Shuffled"
    (shuffled / "data").mkdir(parents=True)
    for split, frame in frames.items():
        frame.sample(frac=1, random_state=3).reset_index(drop=True).to_parquet(
            shuffled / "data" / f"{split}-00000-of-00001.parquet"
        )
    result = evaluate(f"replay:{tmp_path / 'responses'}", f"hf:{shuffled}", None, n_boot=10, progress=False)
    assert result.metrics["classifier_summary"]["category_mismatches"] > 0
    assert any("may not be in the order" in w for w in result.warnings)


def test_a_finished_runs_answers_replay_to_the_same_decisions(replay_setup):
    tmp_path, _, _ = replay_setup
    first = evaluate(
        f"replay:{tmp_path / 'responses'}",
        f"hf:{tmp_path / 'UnsafeBench'}",
        tmp_path / "run",
        n_boot=10,
        progress=False,
    )
    again = evaluate(f"replay:{tmp_path / 'run'}", f"hf:{tmp_path / 'UnsafeBench'}", None, n_boot=10, progress=False)
    a = first.predictions.set_index("id")["decision"]
    b = again.predictions.set_index("id")["decision"]
    assert a.dropna().equals(b.dropna().loc[a.dropna().index]) and b.notna().sum() == a.notna().sum()


def test_a_malformed_response_file_names_the_file_and_item(tmp_path):
    from imagesafety.classifiers import load_classifier

    folder = tmp_path / "m" / "prompt_0"
    folder.mkdir(parents=True)
    (folder / "Laion5B_Hate.json").write_text(
        json.dumps([{"image_fname": "a.png", "response": "safe"}, {"image": "b.png"}])
    )
    with pytest.raises(ReplayError, match=r"Laion5B_Hate.json item 1: expected \{image_fname, response\}"):
        load_classifier(f"replay:{tmp_path / 'm'}")
    (tmp_path / "two" / "a" / "prompt_0").mkdir(parents=True)
    (tmp_path / "two" / "b" / "prompt_0").mkdir(parents=True)
    with pytest.raises(ReplayError, match=r"several models \(a, b\): pick one with --option model=NAME"):
        load_classifier(f"replay:{tmp_path / 'two'}")
