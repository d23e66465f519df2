"""The PerspectiveVision training-set recipe on generated data."""

import json
from pathlib import Path

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


def test_lora_fine_tune_on_a_tiny_vlm_learns_and_loads_as_a_classifier(red_folder, tmp_path):
    import pytest

    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from imagesafety.classifiers import load_classifier
    from imagesafety.perspective.train import train_perspective
    from tiny_models import make_tiny_llava

    base = make_tiny_llava(tmp_path / "llava")
    build_trainset(red_folder, tmp_path / "ts", seed=0)
    card = train_perspective(
        tmp_path / "ts", str(base), tmp_path / "lora", epochs=6, lr=5e-3, accumulation=2, lora_r=4
    ).card
    history = json.loads((tmp_path / "lora" / "history.json").read_text())
    n = card.examples
    first, last = history[:n], history[-n:]
    assert sum(r["loss"] for r in last) / n < sum(r["loss"] for r in first) / n  # it learns the answers
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    clf = load_classifier(
        f"vlm:hf/{base}", adapter=str(tmp_path / "lora"), protocol="policy", device="cpu", max_new_tokens=4
    )
    from PIL import Image

    assert clf.config["adapter"] == str(tmp_path / "lora") and len(clf.predict([Image.new("RGB", (32, 32))])) == 1


def test_two_rank_lora_fine_tune_keeps_replicas_identical_and_shares_the_data(red_folder, tmp_path):
    import os
    import subprocess
    import sys

    import pytest

    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from tiny_models import make_tiny_llava

    base = make_tiny_llava(tmp_path / "llava")
    build_trainset(red_folder, tmp_path / "ts", seed=0)
    script = Path(__file__).parent / "ddp_perspective_training.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(tmp_path / "ts"),
            str(base),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert rank0["lora"].keys() == rank1["lora"].keys() and rank0["lora"]
    for name in rank0["lora"]:
        assert torch.equal(rank0["lora"][name], rank1["lora"][name]), name
    assert any(
        t.abs().sum() > 0 for n, t in rank0["lora"].items() if "lora_B" in n
    )  # B starts at zero: training moved it
    examples = json.loads((tmp_path / "ts" / "llava_train.json").read_text())
    card = rank0["card"]
    assert card.world_size == 2 and card.examples_per_step == 4
    history = json.loads((tmp_path / "lora" / "history.json").read_text())
    for epoch in (1, 2):  # the ranks split each epoch between them, together covering every example
        seen = [(r["rank"], r["example"]) for r in history if r["epoch"] == epoch]
        assert {e for _, e in seen} == {e["id"] for e in examples}
        assert sum(r == 0 for r, _ in seen) == sum(r == 1 for r, _ in seen) == -(-len(examples) // 2)
    assert card.steps == -(-2 * -(-len(examples) // 2) // 2)
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
