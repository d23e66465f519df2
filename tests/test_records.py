"""The metrics document as a typed record: today's files load and rewrite byte for byte, a new run writes the same
document (plus its format version), the shipped JSON Schema is the record's and refuses misspelled keys, and a bad
file fails in one line naming the file and the field."""

import json
from pathlib import Path

import pytest

from imagesafety.records import SCHEMAS, schema
from imagesafety.records.metrics_document import (
    FORMAT_VERSION,
    MetricBlock,
    MetricsFormatError,
    UncoveredBlock,
    load_metrics,
    metrics_schema,
    parse_metrics,
)

FIXTURE = Path(__file__).parent / "fixtures" / "metrics" / "nudenet-example-before-format-version.json"
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "imagesafety" / "records" / "metrics.schema.json"


def test_a_file_written_before_the_format_version_loads_and_rewrites_byte_for_byte():
    """Written by the code before the record existed (NudeNet on `imagesafety example-data`, 100 resamples)."""
    document = load_metrics(FIXTURE)
    assert json.dumps(document.to_json(), indent=2) == FIXTURE.read_text(encoding="utf-8")
    assert isinstance(document.overall, MetricBlock) and document.overall.support == 16
    assert isinstance(document.by_category["hate"], UncoveredBlock)  # NudeNet covers sexual only
    assert document.coverage.covers == ["sexual"] and document.by_category["sexual"].f1.value is not None


def ranking_intervals_masked(value):
    """The document with AUROC and AUPRC intervals reduced to whether they bracket their value: their resampling
    moved from row weights to atom counts (the same distribution, other draws for the same seed)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("auroc", "auprc") and isinstance(item, dict) and "ci95" in item:
                low, high = item["ci95"]
                item = {**item, "ci95": None if low is None else low <= item["value"] <= high}
            out[key] = ranking_intervals_masked(item)
        return out
    return [ranking_intervals_masked(v) for v in value] if isinstance(value, list) else value


def test_a_new_run_writes_the_same_document_with_its_format_version(tmp_path):
    from imagesafety import evaluate
    from imagesafety.data.example import write_example_dataset

    write_example_dataset(tmp_path / "data")
    result = evaluate("nudenet", tmp_path / "data", tmp_path / "run", cache=None, n_boot=100, progress=False)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    old = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert written["format_version"] == FORMAT_VERSION and list(written)[0] == "format_version"
    for key in set(old) | set(written):
        if key not in ("format_version", "run"):  # the run's timings differ from run to run
            assert ranking_intervals_masked(written[key]) == ranking_intervals_masked(old[key]), key
    assert list(written)[1:] == list(old)  # the same keys in the same order
    assert written == result.metrics == result.document.to_json()


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_shipped_schemas_are_the_records_and_the_cli_prints_them(name):
    from typer.testing import CliRunner

    from imagesafety.cli import app

    shipped = SHIPPED.parent / f"{name}.schema.json"
    assert json.loads(shipped.read_text(encoding="utf-8")) == schema(name), (
        f"regenerate: imagesafety schema {name} > src/imagesafety/records/{name}.schema.json"
    )
    printed = CliRunner().invoke(app, ["schema", name])
    assert printed.exit_code == 0 and json.loads(printed.output) == schema(name)
    assert metrics_schema() == schema("metrics")


def test_the_schema_validates_real_files_and_refuses_a_misspelled_key():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SHIPPED.read_text(encoding="utf-8")))
    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    validator.validate(document)
    misspelled = dict(document)
    misspelled["warning"] = ["singular, not warnings"]
    with pytest.raises(jsonschema.ValidationError, match="warning"):
        validator.validate(misspelled)
    nested = json.loads(FIXTURE.read_text(encoding="utf-8"))
    nested["overall"]["f1"]["valeu"] = nested["overall"]["f1"].pop("value")
    with pytest.raises(jsonschema.ValidationError, match="valeu"):
        validator.validate(nested)


def test_a_bad_file_fails_in_one_line_naming_the_file_and_the_field(tmp_path):
    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    document["by_source"]["real"]["f1"]["value"] = "high"
    bad = tmp_path / "not-valid" / "metrics.json"  # "not-valid": left out of conftest's check of written files
    bad.parent.mkdir()
    bad.write_text(json.dumps(document))
    with pytest.raises(MetricsFormatError) as caught:
        load_metrics(bad)
    message = str(caught.value)
    assert "\n" not in message and str(bad) in message and "by_source.real" in message and "f1.value" in message

    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    document["format_version"] = 99
    with pytest.raises(MetricsFormatError, match=r"metrics format 99 is not supported \(supported: 1\)"):
        parse_metrics(document, "future.json")
    with pytest.raises(MetricsFormatError, match="unreadable"):
        (tmp_path / "half.json").write_text('{"overall": ')
        load_metrics(tmp_path / "half.json")


def test_the_leaderboard_names_a_bad_metrics_file(tmp_path):
    from imagesafety.bench.leaderboard import LeaderboardError, read_run

    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    document["overall"].pop("support")
    (tmp_path / "not-valid").mkdir()
    (tmp_path / "not-valid" / "metrics.json").write_text(json.dumps(document))
    with pytest.raises(LeaderboardError, match=r"not-valid/metrics.json: field overall.support: Field required"):
        read_run(tmp_path / "not-valid")


def guard_folder(folder: Path, card: dict) -> Path:
    """A saved linear guard head (4-d embeddings, outputs unsafe and sexual) with `card` as its guard.json."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    folder.mkdir()
    head = torch.nn.Linear(4, 2)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(folder / "guard.safetensors"))
    (folder / "guard.json").write_text(json.dumps(card))
    return folder


GUARD_1 = {  # the first card format (before weights files were recorded): the tensors' hash, no weights_file
    "format": "imagesafety-guard/1",
    "name": "old",
    "encoder": "synthetic",
    "head": "linear",
    "hidden": 256,
    "embed_dim": 4,
    "outputs": ["unsafe", "sexual"],
    "thresholds": {"unsafe": 0.4, "sexual": 0.5},
    "threshold_rule": "F1-optimal",
    "taxonomy": {"name": "guard", "categories": [{"key": "sexual", "name": "sexual"}]},
    "training": {"epochs_run": 3},
    "metrics": {},
    "weights_sha256": "0123456789abcdef0123456789abcdef",
}


def test_a_guard_card_of_the_first_format_loads_through_its_migration(tmp_path):
    from imagesafety.classifiers.probe import load_guard

    head, card = load_guard(guard_folder(tmp_path / "old", GUARD_1))
    assert card.format == "imagesafety-guard/2" and card.outputs == ["unsafe", "sexual"]
    assert card.thresholds == {"unsafe": 0.4, "sexual": 0.5} and head.weight.shape == (2, 4)
    assert card.weights_sha256 == GUARD_1["weights_sha256"] and card.weights_file is None  # no file digest to check


def test_a_bad_card_fails_in_one_line_naming_the_file_and_the_field(tmp_path):
    from imagesafety.classifiers.probe import load_guard

    wrong_head = {**GUARD_1, "format": "imagesafety-guard/2", "head": "transformer"}
    with pytest.raises(ValueError) as caught:
        load_guard(guard_folder(tmp_path / "a", wrong_head))
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path / "a" / "guard.json") in message and "field head" in message
    with pytest.raises(
        ValueError,
        match=r"unknown format 'imagesafety-guard/9' \(supported: imagesafety-guard/2, "
        r"imagesafety-guard/1\)",
    ):
        load_guard(guard_folder(tmp_path / "b", {**GUARD_1, "format": "imagesafety-guard/9"}))
    with pytest.raises(ValueError, match="field thresholds.unsafe"):
        load_guard(guard_folder(tmp_path / "c", {**GUARD_1, "thresholds": {"unsafe": "high"}}))


def test_pair_candidates_read_back_as_written_and_a_bad_line_is_named(tmp_path):
    from imagesafety.pairs.store import PairStore
    from imagesafety.records.pairs import CandidateError

    written = {  # a kept and a rejected attempt, as `pairs generate` has written them (key order included)
        "image_sha256": "ab" * 32,
        "sample_id": "s1",
        "source_image": "1.png",
        "category": "violence_harm_or_cruelty",
        "seed": 0,
        "instruction": "add a knife",
        "planner": "template",
        "editor": "mask-composite",
        "source_label": 0,
        "target_label": 1,
        "source_category": "violence_harm_or_cruelty",
        "source": "real",
        "kept": True,
        "reasons": [],
        "scores": {"ssim": 0.8, "judge_edited": 0.9},
        "pair_id": "0123456789abcdef",
        "original": "images/abab.png",
        "edited": "images/0123456789abcdef-edited.png",
    }
    rejected = {**{k: v for k, v in written.items() if k not in ("pair_id", "original", "edited")}, "seed": 1}
    rejected.update(kept=False, reasons=["judge: still safe"], original_preview="p/o.jpg", edited_preview="p/e.jpg")
    store = PairStore(tmp_path)
    lines = [json.dumps(written), json.dumps(rejected), '{"image_sha256": "cut short by a cra']
    store.log_path.write_text("\n".join(lines) + "\n")
    kept, dropped = store.candidates()
    assert kept.line() == written and list(kept.line()) == list(written) and kept.pair_id == "0123456789abcdef"
    assert dropped.line() == rejected and not dropped.kept and dropped.reasons == ["judge: still safe"]
    store.log_path.write_text(json.dumps({**written, "seed": "first"}) + "\n")
    with pytest.raises(CandidateError, match=r"candidates.jsonl:1: field seed: "):
        store.candidates()


def test_a_robustness_file_written_before_the_record_loads_and_rewrites_byte_for_byte(tmp_path):
    """Written by the code before the record (NudeNet, the square attack on 2 images, JPEG at severities 1 and 5)."""
    from imagesafety.records.robustness_document import (
        AttackOutcome,
        RobustnessFormatError,
        load_robustness,
        parse_robustness,
    )

    fixture = Path(__file__).parent / "fixtures" / "robustness" / "nudenet-square-jpeg-before-format-version.json"
    document = load_robustness(fixture)
    assert json.dumps(document.to_json(), indent=2) == fixture.read_text(encoding="utf-8")
    assert isinstance(document.attacks["square"], AttackOutcome) and document.protocol.attacked == 2
    assert set(document.corruptions["jpeg"]) == {"1", "5"}
    broken = json.loads(fixture.read_text(encoding="utf-8"))
    broken["protocol"]["eps_space"] = "logit"
    with pytest.raises(RobustnessFormatError, match=r"r.json: field protocol.eps_space: Input should be 'pixel'"):
        parse_robustness(broken, "r.json")
