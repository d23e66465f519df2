"""What reading every frame costs: animations against their frames as stills, and the service's early exit on videos.

    python benchmarks/frames.py [--animations 16] [--frames 8] [--quick]

Every figure is a ratio of two things measured in this run, with NudeNet's real model:
- animation_vs_stills = eval (the Runner, cache off) on N x F frames saved as separate PNG files / eval on the same
  frames as N animated GIFs of F frames (best of interleaved runs; target >= 0.9: an animation costs no more than its
  frames as stills);
- serve_early_exit_speedup = /v1/classify on videos whose planted patch is in their second second, with the service's
  early exit off / on (a figure: how much a video that is flagged early saves). The planted patch decides; every view
  also goes through NudeNet, so the saving is a real model's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from imagesafety.classifiers import load_classifier  # noqa: E402
from imagesafety.data import load_dataset  # noqa: E402
from imagesafety.data.example import synthetic_image  # noqa: E402
from imagesafety.run.runner import Runner  # noqa: E402
from imagesafety.run.tasks import PredictionTask  # noqa: E402
from planted import PlantedPatchClassifier, video_bytes  # noqa: E402


def write_sets(root: Path, n: int, frames: int, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    gifs, stills = root / "gifs", root / "stills"
    for folder in (gifs / "unsafe", stills / "unsafe"):
        folder.mkdir(parents=True)
    for i in range(n):
        pictures = [
            synthetic_image(rng, size=size, warm=bool(f % 2)).convert("P", palette=Image.ADAPTIVE).convert("RGB")
            for f in range(frames)
        ]
        pictures[0].save(gifs / "unsafe" / f"{i:04d}.gif", save_all=True, append_images=pictures[1:], duration=100)
        with Image.open(gifs / "unsafe" / f"{i:04d}.gif") as gif:  # the stills are the GIF's own decoded frames
            for f in range(frames):
                gif.seek(f)
                gif.convert("RGB").save(stills / "unsafe" / f"{i:04d}-{f:02d}.png")
    return gifs, stills


class CostlyPlanted(PlantedPatchClassifier):
    """The planted patch decides; every view also goes through NudeNet so the model's cost is real."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def predict_prepared(self, items):
        self.model.predict(items)
        return super().predict_prepared(items)


def serve_figure(videos: int, seconds: int) -> float:
    import httpx

    from imagesafety.media import FramePolicy
    from imagesafety.serve import ServeConfig
    from serve_helpers import running_server

    clips = [video_bytes(seconds=seconds, planted_from=1.0, planted_to=1.5, size=(320, 240)) for _ in range(videos)]
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for early in (False, True, False, True):
            config = ServeConfig(
                api_keys={"k": "bench-key"},
                audit_url=f"sqlite:///{tmp}/audit-{early}.sqlite",
                max_batch_size=4,
                frames=FramePolicy(early_exit=early),
            )
            with running_server(config, {"planted": CostlyPlanted(load_classifier("nudenet"))}) as (url, _, _):
                started = time.perf_counter()
                for clip in clips:
                    r = httpx.post(
                        f"{url}/v1/classify",
                        files=[("files", ("v.mp4", clip, "video/mp4"))],
                        headers={"Authorization": "Bearer bench-key"},
                        timeout=300,
                    )
                    assert r.status_code == 200 and r.json()["results"][0]["flagged"], r.text
                seconds_taken = time.perf_counter() - started
                times[early] = min(times.get(early, float("inf")), seconds_taken)
    return times[False] / times[True]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--animations", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="8 animations of 6 frames, 2 repetitions, 2 videos")
    args = parser.parse_args()
    n, frames, repeats = (8, 6, 2) if args.quick else (args.animations, args.frames, args.repeats)
    clf = load_classifier("nudenet")
    with tempfile.TemporaryDirectory() as tmp:
        gifs, stills = write_sets(Path(tmp), n, frames, args.size)
        best = {"gifs": float("inf"), "stills": float("inf")}
        for _ in range(repeats):
            for name, root in (("stills", stills), ("gifs", gifs)):
                runner = Runner(PredictionTask(clf, None), batch_size=16, show_progress=False)
                started = time.perf_counter()
                rows = runner.run(load_dataset(root))
                best[name] = min(best[name], time.perf_counter() - started)
                assert rows["error"].isna().all(), rows["error"].dropna().head()
        print(
            f"stills {best['stills']:.2f}s for {n * frames} PNGs; animations {best['gifs']:.2f}s for {n} GIFs of "
            f"{frames} frames"
        )
    print(f"figure animation_vs_stills {best['stills'] / best['gifs']:.2f} target >= 0.9")
    speedup = serve_figure(2 if args.quick else 4, 20)
    print(
        f"figure serve_early_exit_speedup {speedup:.2f} (videos of 20 s flagged in their second second; early exit off "
        "/ on)"
    )


if __name__ == "__main__":
    main()
