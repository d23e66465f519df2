"""`robustness`: UnsafeBench's protocol (K correctly classified images, attacked; RA = 1 - attack success rate)
plus accuracy and F1 under natural corruptions, resumable per image through the cache.

Before attacking it says how much work the run is (images x attacks x eps values, with steps or queries),
and every bar is named by what it does (`pgd eps=0.01`, `jpeg severity 3`) and counts images.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imagesafety import registry
from imagesafety.bench.evaluate import evaluate
from imagesafety.bench.grouping import grouped
from imagesafety.bench.robustness.attacks import AttackSpec, is_white_box, perturbation_sizes, run_attack
from imagesafety.bench.robustness.blackbox import BlackBoxView
from imagesafety.bench.robustness.corruptions import CorruptedClassifier
from imagesafety.classifiers.base import Differentiable, PaddedInput, SafetyClassifier, cache_key
from imagesafety.data import dataset_name, select_samples
from imagesafety.data.decoding import decoded_samples
from imagesafety.files import atomic_path, json_safe, write_atomic
from imagesafety.media import FramePolicy
from imagesafety.records.robustness_document import FORMAT_VERSION, RobustnessDocument, parse_robustness
from imagesafety.run.engine import EngineOptions
from imagesafety.run.job import DataSelection
from imagesafety.run.progress import add_task, announce, progress_bar
from imagesafety.store import USE_DEFAULT_CACHE, open_cache

EPS_CURVE_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
CURVED = ("gn", "fgsm", "pgd", "square")


@dataclass
class RobustnessResult:
    document: RobustnessDocument
    attack_rows: pd.DataFrame
    examples: list[dict] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """The document as robustness.json holds it (plain JSON values, for notebooks)."""
        return self.document.to_json()


def check_attacks(classifier: SafetyClassifier, attacks: list[str]) -> None:
    """Every attack is registered, and white-box ones only run on classifiers with gradients."""
    black_box = [n for n, e in registry.entries("attack").items() if not e.attributes["white_box"]]
    for name in attacks:
        registry.get("attack", name)
        if is_white_box(name) and not isinstance(classifier, Differentiable):
            raise ValueError(
                f"classifier {classifier.name!r} has no gradients, so white-box attack {name!r} cannot run on it; "
                f"use a black-box attack: --attacks {','.join(black_box)}"
            )


def input_std(classifier: SafetyClassifier) -> float:
    """The smallest channel std of the classifier's input normalisation: eps in normalised units = pixel eps / std.
    Classifiers without gradients see [0, 1] pixels (std 1)."""
    return classifier.pixel_spec.min_std if isinstance(classifier, Differentiable) else 1.0


def attack_key(classifier: SafetyClassifier, spec: AttackSpec, seed: int) -> str:
    text = json.dumps({"classifier": cache_key(classifier), "attack": spec.key(), "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def pick_correct(rows: pd.DataFrame, k: int, seed: int) -> tuple[pd.DataFrame, int]:
    """K labelled images the classifier gets right, drawn with `seed` (as UnsafeBench: seed 2023); and how many it got
    wrong."""
    ok = rows[rows["error"].isna() & rows["label"].notna()]
    correct = ok[ok["decision"] == ok["label"]]
    chosen = correct.sample(n=min(k, len(correct)), random_state=seed) if len(correct) else correct
    return chosen.sort_values("id"), int(len(ok) - len(correct))


def image_mask(classifier, pictures: list, clean):
    """For a padded input (NudeNet's letterbox, `PaddedInput`): 1 on the rows and columns that hold the image, 0 on
    the padding, shaped like `clean`; None for inputs that are all image."""
    if not isinstance(classifier, PaddedInput):
        return None
    mask = clean.new_zeros(clean.shape[0], 1, *clean.shape[2:])
    for j, picture in enumerate(pictures):
        rows, cols = classifier.image_region(classifier.prepare(picture))
        mask[j, :, :rows, :cols] = 1
    return mask


def within_image(logit_fn, clean, mask):
    """The logit function a white-box attack sees: with a mask, perturbations of the padding do not reach the model
    (so its gradients there are zero); the attack's result is then projected back onto the image's pixels."""
    if mask is None:
        return logit_fn
    return lambda pixels: logit_fn(clean + (pixels - clean) * mask)


def attack_images(
    classifier,
    spec: AttackSpec,
    chosen: pd.DataFrame,
    images: dict[str, Any],
    cache,
    seed: int,
    batch_size: int,
    keep_examples: int = 0,
    advance=lambda n: None,
) -> tuple[list[dict], list[dict]]:
    """Outcome per chosen image (success, perturbation sizes, scores), from the cache or by attacking now."""
    import torch

    key = attack_key(classifier, spec, seed)
    done = cache.get_attack_results(key, chosen["sha256"]) if cache is not None else {}
    advance(int(chosen["sha256"].isin(done.keys()).sum()))
    todo = chosen[~chosen["sha256"].isin(done.keys())]
    examples: list[dict] = []
    white = is_white_box(spec.name)
    attack = registry.get("attack", spec.name).load()
    for start in range(0, len(todo), batch_size):
        part = todo.iloc[start : start + batch_size]
        labels = torch.tensor(part["label"].astype(int).to_numpy())
        fresh = []
        if white:
            pictures = [images[i] for i in part["id"]]
            clean = classifier.input_pixels(pictures)
            labels = labels.to(clean.device)  # the model's device: a GPU where there is one
            threshold = classifier.logit_threshold
            mask = image_mask(classifier, pictures, clean)
            adv = run_attack(
                spec, clean, labels, within_image(classifier.unsafe_logits, clean, mask), threshold, seed + start
            )
            if mask is not None:
                adv = clean + (adv - clean) * mask  # the padding stays as the model's preprocessing made it
            with torch.no_grad():
                clean_logit, adv_logit = classifier.unsafe_logits(clean), classifier.unsafe_logits(adv)
            flipped = ((adv_logit >= threshold).long() != labels).tolist()
            sizes = perturbation_sizes(clean, adv)
            for j, (_, row) in enumerate(part.iterrows()):
                fresh.append(
                    (
                        row["sha256"],
                        {
                            "success": bool(flipped[j]),
                            "linf": float(sizes["linf"][j]),
                            "l2": float(sizes["l2"][j]),
                            "mse": float(sizes["mse"][j]),
                            "clean_logit": float(clean_logit[j]),
                            "adv_logit": float(adv_logit[j]),
                        },
                    )
                )
                if len(examples) < keep_examples:
                    examples.append(
                        {
                            "id": row["id"],
                            "label": int(row["label"]),
                            "clean": clean[j].cpu().numpy(),
                            "adv": adv[j].cpu().numpy(),
                        }
                    )
            advance(len(part))
        else:
            view = BlackBoxView(classifier)
            for j, (_, row) in enumerate(part.iterrows()):
                item = view.to_input(images[row["id"]])
                adv = attack(view, item, int(row["label"]), spec, seed + start + j)
                scores = view.scores(np.stack([item.array, adv]), item)
                flipped = int(scores[1] >= classifier.threshold) != int(row["label"])
                delta = torch.from_numpy(adv - item.array)[None]
                sizes = perturbation_sizes(torch.zeros_like(delta), delta)
                fresh.append(
                    (
                        row["sha256"],
                        {
                            "success": bool(flipped),
                            "linf": float(sizes["linf"][0]),
                            "l2": float(sizes["l2"][0]),
                            "mse": float(sizes["mse"][0]),
                            "clean_score": float(scores[0]),
                            "adv_score": float(scores[1]),
                        },
                    )
                )
                if len(examples) < keep_examples:
                    examples.append(
                        {
                            "id": row["id"],
                            "label": int(row["label"]),
                            "clean": item.embed(item.array),
                            "adv": item.embed(adv),
                        }
                    )
                advance(1)
        if cache is not None:
            cache.put_attack_results(key, fresh)
        done.update(fresh)
    rows = [
        {"id": r["id"], "category": r["category"], "source": r["source"], "label": int(r["label"]), **done[r["sha256"]]}
        for _, r in chosen.iterrows()
    ]
    return rows, examples


def robust_accuracy(rows: pd.DataFrame) -> dict[str, Any]:
    """RA = 1 - attack success rate, overall, by category and by source, with mean perturbation sizes."""

    def block(part: pd.DataFrame, name: str) -> dict:
        return {
            "robust_accuracy": float(1 - part["success"].mean()),
            "attacked": int(len(part)),
            "mean_linf": float(part["linf"].mean()),
            "mean_l2": float(part["l2"].mean()),
            "mean_mse": float(part["mse"].mean()),
        }

    if rows.empty:
        return {"attacked": 0}
    return grouped(rows, block)


def work_summary(attacks: list[str], n_images: int, eps_curve: bool, steps: int) -> str:
    """What the attacks will cost, said before they start."""
    parts, total = [], 0
    for name in attacks:
        n_eps = len(EPS_CURVE_FACTORS) if eps_curve and name in CURVED else 1
        runs = n_images * n_eps
        total += runs
        unit = "queries" if not is_white_box(name) else "steps"
        cost = f"up to {steps} {unit} each" if name in ("pgd", "deepfool", "square") else "one step each"
        parts.append(f"{name}: {n_images} images x {n_eps} eps value{'s' if n_eps > 1 else ''} ({cost})")
    return f"attacking: {'; '.join(parts)} = {total} image attacks" + (
        " (--no-eps-curve attacks at eps only)" if eps_curve else ""
    )


def robustness(
    classifier: str | SafetyClassifier,
    dataset,
    out_dir: str | Path | None = None,
    *,
    attacks: list[str] = ("pgd",),
    eps: float = 0.01,
    eps_space: str = "pixel",
    k: int = 500,
    seed: int = 2023,
    steps: int = 100,
    eps_curve: bool = True,
    corruptions: list[str] | None = None,
    severities: list[int] = (1, 2, 3, 4, 5),
    split: str | None = None,
    categories: list[str] | None = None,
    sources: list[str] | None = None,
    limit: int | None = None,
    cache=USE_DEFAULT_CACHE,
    batch_size: int | None = 16,
    workers: int | None = None,
    save_adversarial: str | Path | None = None,
    progress: bool = True,
    n_boot: int = 200,
    classifier_options: dict | None = None,
    engine: EngineOptions | str = "local",
    address: str | None = None,
    frames: FramePolicy | None = None,
    streaming: bool = False,
    allow_outside_root: bool = False,
    url_hosts: list[str] | None = None,
) -> RobustnessResult:
    """Attack K correctly classified images with each attack (and eps curve), and evaluate under corruptions.
    The clean and corrupted passes read every frame under `frames`; attacks perturb one picture per image."""
    clf = (
        registry.build("classifier", classifier, **(classifier_options or {}))
        if isinstance(classifier, str)
        else classifier
    )
    attacks = list(attacks)
    check_attacks(clf, attacks)
    for name in corruptions or []:
        registry.get("corruption", name)
    if eps_space not in ("pixel", "normalized"):
        raise ValueError("eps_space must be 'pixel' or 'normalized'")
    if k < 1 or steps < 1 or eps <= 0:
        raise ValueError("--k and --steps must be at least 1 and --eps above 0")
    std = input_std(clf)
    eps_pixel = eps * std if eps_space == "normalized" else eps
    store = open_cache(cache)
    selection = DataSelection(split, categories, sources, limit, streaming, allow_outside_root, list(url_hosts or []))
    data = selection.open(dataset)
    engine = engine if isinstance(engine, EngineOptions) else EngineOptions(engine, address)
    batch_size = batch_size or 16
    on_ray = engine.engine == "ray"
    if on_ray and not isinstance(classifier, str):
        raise ValueError("--engine ray builds the classifier on each worker: give it as a spec string")
    common = dict(
        split=split,
        categories=categories,
        sources=sources,
        limit=limit,
        cache=store,
        batch_size=batch_size,
        workers=workers,
        progress=progress,
        n_boot=n_boot,
        frames=frames,
    )
    clean = evaluate(
        classifier if on_ray else clf,
        data,
        Path(out_dir) / "clean" if on_ray and out_dir else None,
        engine=engine,
        classifier_options=classifier_options if on_ray else None,
        description=f"clean {clf.name}",
        **common,
    )
    chosen, misclassified = pick_correct(clean.predictions, k, seed)
    wanted = set(chosen["id"])
    samples = [s for s in select_samples(data, categories, sources, [split] if split else None) if s.id in wanted]
    images = {p.sample.id: p.image for p in decoded_samples(samples) if p.error is None}
    metrics: dict[str, Any] = {
        "classifier": clean.document.classifier.model_dump(mode="json", exclude_unset=True),
        "dataset": dataset_name(data, str(dataset)),
        "protocol": {
            "k": k,
            "seed": seed,
            "attacked": int(len(chosen)),
            "excluded_misclassified": misclassified,
            "eps": eps,
            "eps_space": eps_space,
            "eps_pixel_units": eps_pixel,
            "eps_normalized_units": eps_pixel / std,
            "input_std": std,
            "steps": steps,
            "success": "the decision flips, judged on the classifier's input tensor (white-box) or its scores "
            "(black-box)",
        },
        "clean": {m: clean.document.overall.metric(m).value for m in ("accuracy", "f1")},
        "attacks": {},
        "eps_curves": {},
        "corruptions": {},
    }
    if attacks:
        announce(work_summary(attacks, len(chosen), eps_curve, steps), progress)
    all_rows, examples = [], {}
    with progress_bar(progress) as bar:

        def attack_at(name: str, e: float, keep: int = 0):
            task = add_task(bar, f"{name} eps={e:.4g}", total=len(chosen))
            return attack_images(
                clf,
                AttackSpec(name, e, steps),
                chosen,
                images,
                store,
                seed,
                batch_size,
                keep_examples=keep,
                advance=lambda n: bar.update(task, advance=n),
            )

        for name in attacks:
            rows, ex = attack_at(name, eps_pixel, len(chosen) if save_adversarial else 4)
            frame = pd.DataFrame(rows)
            metrics["attacks"][name] = robust_accuracy(frame)
            all_rows.append(frame.assign(attack=name))
            examples[name] = ex
            if eps_curve and name in CURVED:
                curve = {}
                for factor in EPS_CURVE_FACTORS:
                    if factor == 1.0:
                        curve[eps_pixel] = (
                            1 - metrics["attacks"][name]["overall"]["robust_accuracy"] if len(frame) else None
                        )
                        continue
                    r, _ = attack_at(name, eps_pixel * factor)
                    curve[eps_pixel * factor] = float(pd.DataFrame(r)["success"].mean()) if r else None
                metrics["eps_curves"][name] = {f"{e:.6g}": v for e, v in sorted(curve.items())}
    for name in corruptions or []:
        per = {}
        for severity in severities:
            res = evaluate(
                CorruptedClassifier(clf, name, int(severity), seed),
                data,
                None,
                description=f"{name} severity {severity}",
                **common,
            )
            overall = res.document.overall
            acc, f1 = overall.accuracy.value, overall.f1.value
            per[str(severity)] = {
                "accuracy": acc,
                "f1": f1,
                "recall": overall.recall.value,
                "fpr": overall.fpr.value,
                "accuracy_drop": None
                if acc is None or metrics["clean"]["accuracy"] is None
                else metrics["clean"]["accuracy"] - acc,
                "f1_drop": None if f1 is None or metrics["clean"]["f1"] is None else metrics["clean"]["f1"] - f1,
            }
        metrics["corruptions"][name] = per
    document = parse_robustness({"format_version": FORMAT_VERSION, **json_safe(metrics)}, "this robustness run")
    result = RobustnessResult(
        document,
        pd.concat(all_rows) if all_rows else pd.DataFrame(),
        [dict(e, attack=a) for a, ex in examples.items() for e in ex[:4]],
    )
    if save_adversarial:
        result.files["adversarial"] = write_adversarial(
            clf, attacks, chosen, images, examples, seed, batch_size, eps_pixel, steps, Path(save_adversarial)
        )
    if out_dir is not None:
        from imagesafety.bench.robustness.report import write_robustness_report

        result.files.update(write_robustness_report(result, Path(out_dir)))
    return result


def write_adversarial(
    clf, attacks, chosen, images, examples: dict[str, list[dict]], seed, batch_size, eps, steps, root: Path
) -> Path:
    """Adversarial images as PNG files plus a manifest.jsonl, loadable by `eval` (labels kept). The run's own
    adversarial images are written; images whose outcome came from the cache are attacked again to get theirs."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for name in attacks:
        have = examples.get(name, [])
        missing = chosen[~chosen["id"].isin({ex["id"] for ex in have})]
        if len(missing):
            _, more = attack_images(
                clf, AttackSpec(name, eps, steps), missing, images, None, seed, batch_size, keep_examples=len(missing)
            )
            have = have + more
        (root / name).mkdir(exist_ok=True)
        for ex in have:
            pixels = (np.clip(ex["adv"].transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
            rel = f"{name}/{hashlib.sha256(ex['id'].encode()).hexdigest()[:16]}.png"
            with atomic_path(root / rel) as tmp:
                Image.fromarray(pixels).save(tmp, format="PNG")
            row = chosen[chosen["id"] == ex["id"]].iloc[0]
            lines.append(
                json.dumps(
                    {
                        "path": rel,
                        "label": int(row["label"]),
                        "category": row["category"],
                        "source": row["source"],
                        "id": f"{name}:{ex['id']}",
                        "attack": name,
                    }
                )
            )
    return write_atomic(root / "manifest.jsonl", "\n".join(lines) + "\n")
