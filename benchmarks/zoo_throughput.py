"""UnsafeBench's five conventional classifiers in one process (one shared CLIP) vs five separate runs.

    python benchmarks/zoo_throughput.py [--images 120] [--quick]

Both sides are whole `imagesafety eval` processes on the same generated images, with the prediction cache off:
- shared: `imagesafety eval -c q16 -c multiheaded -c laion-nsfw -c sd-safety-checker -c nudenet` (one process: Q16,
  the multi-headed classifier and LAION's detector embed each image once with their common CLIP);
- separate: five `imagesafety eval -c NAME` processes, one after the other.
figure zoo_shared_clip_speedup = separate wall time / shared wall time (target >= 1.8).

No hub access is needed: the checkpoints are written in the Hub repos' layouts with random weights (the speed of a
network does not depend on its weights), on a ViT-B/16-sized CLIP (ViT-L/14 with `--large`); NudeNet is the real one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from imagesafety.data.example import synthetic_image  # noqa: E402
from tiny_models import write_laion_l14, write_multiheaded, write_q16_prompts, write_sd_safety_checker  # noqa: E402

TARGET = 1.8


def write_backbone(folder: Path, large: bool) -> Path:
    """A transformers CLIP with a 768-d image embedding (what the three heads expect), random weights."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from tiny_models import write_tiny_clip_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_clip_tokenizer(folder)
    torch.manual_seed(0)
    width, layers, heads, patch = (1024, 24, 16, 14) if large else (768, 12, 12, 16)
    config = CLIPConfig(
        text_config=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, projection_dim=768
        ),
        vision_config=dict(
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            image_size=224,
            patch_size=patch,
            projection_dim=768,
        ),
        projection_dim=768,
    )
    CLIPModel(config).save_pretrained(folder)
    return folder


def write_images(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("unsafe" if i % 2 else "safe") / "sexual"
        folder.mkdir(parents=True, exist_ok=True)
        synthetic_image(rng, size=320, warm=bool(i % 2)).save(folder / f"{i:05d}.jpg", quality=90)


def eval_args(work: Path, names: list[str], out: Path) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "imagesafety",
        "eval",
        "-d",
        str(work / "data"),
        "-o",
        str(out),
        "--no-cache",
        "-q",
        "--bootstrap",
        "0",
        "--no-html",
    ]
    for name in names:
        args += ["-c", name]
    options = {
        "q16.weights": work / "Q16",
        "multiheaded.weights": work / "MultiHeaded",
        "laion-nsfw.weights": work / "nsfw.pth",
        "sd-safety-checker.weights": work / "checker",
    }
    for key, value in options.items():
        if key.split(".")[0] in names:
            args += ["--option", f"{key}={value}" if len(names) > 1 else f"{key.split('.', 1)[1]}={value}"]
    if {"q16", "multiheaded", "laion-nsfw"} & set(names):
        args += ["--option", f"backbone={work / 'clip'}"]
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--large", action="store_true", help="ViT-L/14-sized CLIP (as the paper's; slow on a CPU)")
    parser.add_argument("--quick", action="store_true", help="24 images (a smoke test, not a figure)")
    args = parser.parse_args()
    n = 24 if args.quick else args.images
    names = ["q16", "multiheaded", "laion-nsfw", "sd-safety-checker", "nudenet"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_images(work / "data", n)
        write_backbone(work / "clip", args.large)
        write_q16_prompts(work / "Q16")
        write_multiheaded(work / "MultiHeaded")
        write_laion_l14(work / "nsfw.pth")
        vision = (
            dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14)
            if args.large
            else dict(
                hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16
            )
        )
        write_sd_safety_checker(work / "checker", vision, projection_dim=768, image_size=224)
        shared = timed(eval_args(work, names, work / "shared"))
        separate = {name: timed(eval_args(work, [name], work / f"alone-{name}")) for name in names}
    total = sum(separate.values())
    print(
        f"{n} images; one process, five classifiers: {shared:.1f} s; five processes: {total:.1f} s "
        f"({', '.join(f'{k} {v:.1f}' for k, v in separate.items())})"
    )
    print(f"figure zoo_shared_clip_speedup {total / shared:.2f} target >= {TARGET}")


if __name__ == "__main__":
    main()
