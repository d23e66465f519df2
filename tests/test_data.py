import base64
import json

import pandas as pd
import pytest

from conftest import jpeg_bytes
from imagesafety.data import FolderDataset, ManifestDataset, ParquetDataset, load_dataset, select_samples
from imagesafety.images import decode_image


def test_folder_layout_with_categories_sources_and_splits(tmp_path):
    for rel in (
        "train/safe/a.jpg",
        "train/unsafe/sexual/generated/b.jpg",
        "test/unsafe/violence/c.jpg",
        "test/safe/real/d.jpg",
    ):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes())
    samples = {s.id: s for s in load_dataset(tmp_path)}
    assert set(samples) == {
        "train/safe/a.jpg",
        "train/unsafe/sexual/generated/b.jpg",
        "test/unsafe/violence/c.jpg",
        "test/safe/real/d.jpg",
    }
    b = samples["train/unsafe/sexual/generated/b.jpg"]
    assert (b.label, b.category, b.source, b.split) == (1, "sexual", "generated", "train")
    d = samples["test/safe/real/d.jpg"]
    assert (d.label, d.category, d.source, d.split) == (0, None, "real", "test")
    assert decode_image(b.load_bytes()).size == (48, 40)


def test_folder_without_label_folders_is_refused(tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(ValueError, match="no 'safe/' or 'unsafe/' folder"):
        FolderDataset(tmp_path)


def test_manifest_jsonl_and_csv_resolve_relative_paths(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "x.jpg").write_bytes(jpeg_bytes())
    rows = [
        {"path": "img/x.jpg", "label": "unsafe", "category": "Self-harm", "source": "Lexica"},
        {"path": "img/x.jpg", "label": 0, "category": "Hate", "source": "Laion5B", "id": "second"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    first, second = list(load_dataset(tmp_path / "m.jsonl"))
    assert (first.label, first.category, first.source) == (1, "self_harm", "generated")
    assert (second.id, second.label, second.source) == ("second", 0, "real")
    assert first.load_bytes() == jpeg_bytes()
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    assert [s.label for s in ManifestDataset(tmp_path / "m.csv")] == [1, 0]


def test_manifest_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"path": "a.jpg", "label": "safe"}\n{"path": "b.jpg", "label": "maybe"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl row 2: label 'maybe'"):
        list(load_dataset(path))
    path.write_text('{"path": "a.jpg"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        list(load_dataset(path))
    path.write_text('{"label": 1}\n')
    with pytest.raises(ValueError, match="row 1: no image column"):
        list(load_dataset(path))


def unsafebench_frame():
    """Rows in the exact schema of yiting/UnsafeBench (image as a {bytes, path} struct)."""
    return pd.DataFrame(
        {
            "image": [{"bytes": jpeg_bytes((i * 40, 0, 0)), "path": None} for i in range(4)],
            "safety_label": ["Safe", "Unsafe", "Unsafe", "Safe"],
            "category": ["Hate", "Sexual", "Self-harm", "Public and personal health"],
            "source": ["Laion5B", "Lexica", "Laion5B", "Lexica"],
            "text": ["a", "b", "c", "d"],
        }
    )


def test_parquet_with_embedded_bytes_in_unsafebench_schema(tmp_path):
    unsafebench_frame().to_parquet(tmp_path / "ub.parquet")
    samples = list(ParquetDataset(tmp_path / "ub.parquet"))
    assert [s.label for s in samples] == [0, 1, 1, 0]
    assert [s.source for s in samples] == ["real", "generated", "real", "generated"]
    assert [s.category for s in samples] == ["hate", "sexual", "self_harm", "public_and_personal_health"]
    assert samples[1].load_bytes() == jpeg_bytes((40, 0, 0))
    assert samples[0].metadata == {"text": "a"}


def test_parquet_rows_of_every_kind_in_one_batch(tmp_path):
    """A batch is converted column by column: each row still takes its own image cell (bytes, else the path), its
    label spelling, id, category and extra columns, and a row without an image is an error row naming it."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "on-disk.jpg").write_bytes(jpeg_bytes((0, 90, 0)))
    frame = pd.DataFrame(
        {
            "image": [
                {"bytes": jpeg_bytes((200, 0, 0)), "path": None},
                {"bytes": None, "path": "on-disk.jpg"},
                None,
                {"bytes": jpeg_bytes((0, 0, 200)), "path": "ignored.jpg"},
            ],
            "safety_label": ["Unsafe", "safe", None, 1],
            "id": ["a", None, "c", "d"],
            "category": ["Self-harm", "Self-harm", None, ""],
            "split": [None, "test", "", "train"],
            "text": ["one", None, "three", "four"],
            "tags": [["x"], ["y"], [], ["z"]],
        }
    )
    frame["safety_label"] = frame["safety_label"].astype(str).replace({"None": None})
    frame.to_parquet(folder / "mixed.parquet")
    samples = list(ParquetDataset(folder / "mixed.parquet"))
    assert [s.id for s in samples] == ["a", "mixed:all:1", "c", "d"]
    assert [s.label for s in samples] == [1, 0, None, 1]
    assert [s.category for s in samples] == ["self_harm", "self_harm", None, None]
    assert [s.split for s in samples] == [None, "test", None, "train"]
    assert [s.position for s in samples] == [0, 1, 2, 3]
    assert samples[0].metadata == {"text": "one"} and samples[1].metadata == {"text": None}
    assert samples[0].load_bytes() == jpeg_bytes((200, 0, 0)) and samples[3].load_bytes() == jpeg_bytes((0, 0, 200))
    assert samples[1].load_bytes() == jpeg_bytes((0, 90, 0))
    assert samples[2].problem == "the image cell is empty" and samples[2].image == "mixed row 2"
    with pytest.raises(Exception, match="mixed row 2: the image cell is empty"):
        samples[2].load_bytes()
    frame.iloc[[0, 1]].to_parquet(folder / "no-nulls.parquet")  # every struct present, one without bytes
    assert [s.load_bytes() for s in ParquetDataset(folder / "no-nulls.parquet")] == [
        jpeg_bytes((200, 0, 0)),
        jpeg_bytes((0, 90, 0)),
    ]


def test_a_label_that_is_not_one_names_its_row_in_a_batch(tmp_path):
    frame = unsafebench_frame()
    frame.loc[2, "safety_label"] = "maybe"
    frame.to_parquet(tmp_path / "ub.parquet")
    with pytest.raises(ValueError, match="ub row 2: label 'maybe' is not one of safe/unsafe/0/1"):
        list(ParquetDataset(tmp_path / "ub.parquet"))


def test_hugging_face_loader_reads_unsafebench_schema_offline(tmp_path):
    pytest.importorskip("datasets")
    data = tmp_path / "UnsafeBench" / "data"
    data.mkdir(parents=True)
    frame = unsafebench_frame()
    frame.iloc[:3].to_parquet(data / "train-00000-of-00001.parquet")
    frame.iloc[3:].to_parquet(data / "test-00000-of-00001.parquet")
    ds = load_dataset(f"hf:{tmp_path / 'UnsafeBench'}")
    samples = list(ds)
    assert [(s.split, s.label, s.source) for s in samples] == [
        ("train", 0, "real"),
        ("train", 1, "generated"),
        ("train", 1, "real"),
        ("test", 0, "generated"),
    ]
    assert samples[3].load_bytes() == jpeg_bytes((120, 0, 0))
    only_test = load_dataset(f"hf:{tmp_path / 'UnsafeBench'}", splits=["test"])
    assert [s.split for s in only_test] == ["test"]
    with pytest.raises(ValueError, match=r"no split \['validation'\]"):
        list(load_dataset(f"hf:{tmp_path / 'UnsafeBench'}", splits=["validation"]))


def test_external_set_schema_with_base64_images(tmp_path):
    images = [jpeg_bytes((0, 200, 0)), jpeg_bytes((0, 0, 200))]
    pd.DataFrame(
        {"image": [base64.b64encode(b).decode() for b in images], "label": [1, 0], "index": [7, 8]}
    ).to_parquet(tmp_path / "smid.parquet")
    samples = list(load_dataset(tmp_path / "smid.parquet"))
    assert [(s.id, s.label) for s in samples] == [("7", 1), ("8", 0)]
    assert [s.load_bytes() for s in samples] == images


def test_select_samples_filters(red_folder):
    ds = load_dataset(red_folder)
    assert {s.category for s in select_samples(ds, categories=["Violence"])} == {"violence"}
    assert {s.source for s in select_samples(ds, sources=["generated"])} == {"generated"}
    assert len(list(select_samples(ds, limit=5))) == 5
    assert list(select_samples(ds, splits=["test"])) == []


def test_selection_over_read_batches_is_the_selection_over_samples(tmp_path, monkeypatch):
    """Parquet read 3 rows at a time, as columns: filters, a limit cutting a batch, duplicate ids within a batch and
    across batches give what filtering the samples one by one gives (the reference written here)."""
    import imagesafety.data.parquet as parquet
    from imagesafety.data import DuplicateIdError
    from imagesafety.data.batch import rebatched

    monkeypatch.setattr(parquet, "batch_rows", lambda metadata: 3)
    frame = pd.concat([unsafebench_frame()] * 4, ignore_index=True)  # 16 rows, 6 read batches
    frame.to_parquet(tmp_path / "ub.parquet")
    data = ParquetDataset(tmp_path / "ub.parquet")
    assert len(list(data.batches())) == 6

    def reference(categories=None, sources=None, limit=None):
        out = [s for s in data if categories is None or s.category in categories]
        out = [s for s in out if sources is None or s.source in sources]
        return [s.id for s in out][:limit]

    for kwargs in ({}, {"categories": ["sexual"]}, {"sources": ["real"], "limit": 5}, {"limit": 7}, {"limit": 0}):
        selected = select_samples(data, **kwargs)
        assert [s.id for s in selected] == reference(**kwargs)
        assert [i for b in selected.batches() for i in b.ids] == reference(**kwargs)
    parts = list(rebatched(select_samples(data).batches(), 5))
    assert [len(b) for b in parts] == [5, 5, 5, 1] and [i for b in parts for i in b.ids] == reference()
    assert parts[1].sample(0).load_bytes() == list(data)[5].load_bytes()
    frame.assign(id=[f"r{i % 5}" for i in range(16)]).to_parquet(tmp_path / "dup.parquet")  # r0 again at row 5
    with pytest.raises(DuplicateIdError, match="two rows have the id 'r0'"):
        list(select_samples(ParquetDataset(tmp_path / "dup.parquet")))
    assert len(list(select_samples(ParquetDataset(tmp_path / "dup.parquet"), limit=4))) == 4  # row 5 never read
    frame.assign(id=["same"] * 16).to_parquet(tmp_path / "same.parquet")  # within the first batch
    with pytest.raises(DuplicateIdError, match="the second is <bytes>"):
        list(select_samples(ParquetDataset(tmp_path / "same.parquet")))


@pytest.mark.parametrize("spec, message", [("nope/missing/dir", "not found"), ("./no-such-folder", "not found")])
def test_bad_dataset_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(spec)


def test_unknown_file_type(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="unknown dataset file type '.txt'"):
        load_dataset(tmp_path / "x.txt")


def test_hugging_face_streaming_reads_the_same_rows(tmp_path):
    pytest.importorskip("datasets")
    data = tmp_path / "UnsafeBench" / "data"
    data.mkdir(parents=True)
    unsafebench_frame().to_parquet(data / "test-00000-of-00001.parquet")
    streamed = list(load_dataset(f"hf:{tmp_path / 'UnsafeBench'}", streaming=True))
    loaded = list(load_dataset(f"hf:{tmp_path / 'UnsafeBench'}"))
    assert [(s.id, s.label, s.category, s.source) for s in streamed] == [
        (s.id, s.label, s.category, s.source) for s in loaded
    ]
    assert streamed[1].load_bytes() == loaded[1].load_bytes()


def test_a_sample_batch_gives_back_every_field_of_its_samples():
    """A batch built from Samples, and one built from its columns alone, give back Samples equal in every field."""
    from imagesafety.data import ReadPolicy, Sample
    from imagesafety.data.batch import SampleBatch

    samples = [
        Sample(f"id{i}", b"x" * i, i % 2, f"c{i}", "real", "train", f"p{i}", "edited", {"text": str(i)},
               ReadPolicy(root=f"/r{i}"), None if i else "no image", i)
        for i in range(3)
    ]  # fmt: skip
    kept = SampleBatch.of(samples)
    rebuilt = SampleBatch(*kept.columns())
    assert kept.samples() == samples and rebuilt.samples() == samples and rebuilt.rows is None
    assert [rebuilt.sample(i) for i in range(3)] == samples and rebuilt.take([2, 0]).samples() == samples[::-2]
    assert rebuilt.image_refs() == ["<bytes>"] * 3
