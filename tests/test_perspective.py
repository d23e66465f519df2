"""The PerspectiveVision training-set recipe on generated data."""

import json

from imagesafety.perspective.trainset import build_trainset
from imagesafety.taxonomy import UNSAFEBENCH


def test_trainset_recipe(red_folder, tmp_path):
    stats = build_trainset(red_folder, tmp_path / "ts", seed=3)
    examples = json.loads((tmp_path / "ts" / "llava_train.json").read_text())
    assert stats.images == 12 and stats.negative_samples == 6
    assert stats.unsafe == stats.safe == len(examples) / 2  # balanced
    for e in examples:
        human, gpt = e["conversations"][0]["value"], e["conversations"][1]["value"]
        listed = [c for c in UNSAFEBENCH if f"- {c.name}:" in human]
        assert 1 <= len(listed) <= 11 and human.startswith("<image>")
        own_listed = any(c.key == e["category"] for c in listed)
        if e["id"].endswith(":negative"):
            assert not own_listed and gpt == "safe" and e["label"] == 0
        else:
            assert own_listed and 2 <= len(listed)
            assert gpt == (f"unsafe: {UNSAFEBENCH.get(e['category']).name}" if e["label"] == 1 else "safe")
        assert (tmp_path / "ts" / e["image"]).is_file()
    try:
        import datasets

        assert len(datasets.load_from_disk(str(tmp_path / "ts" / "hf_dataset"))) == len(examples)
    except ImportError:
        pass
    again = build_trainset(red_folder, tmp_path / "ts2", seed=3)
    assert json.loads((tmp_path / "ts2" / "llava_train.json").read_text()) == examples and again == stats
