"""`evaluate_many`: several classifiers on one dataset in one process (they share a loaded CLIP and the decoded dataset
rows' cache), each into its own folder, then a leaderboard across them.

Every classifier is built before any runs, so a missing checkpoint stops the whole job in the first seconds, not after
an hour. A run that fails later (too many failed images) does not stop the others: the leaderboard is written with
the runs that finished, then `ManyRunsFailed` names the ones that did not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagesafety import registry
from imagesafety.bench.evaluate import EvalResult, RunFailed, evaluate
from imagesafety.bench.leaderboard import RUN_ORDER, Leaderboard, RunEntry, build_leaderboard, unsafebench_dataset
from imagesafety.classifiers.base import SafetyClassifier
from imagesafety.data import Dataset, load_dataset
from imagesafety.files import write_atomic


class ManyRunsFailed(RunFailed):
    """Some classifiers' runs failed; the others' results and the leaderboard were written (`.result`)."""

    result: ManyResult


@dataclass
class ManyResult:
    results: dict[str, EvalResult]
    leaderboard: Leaderboard | None
    files: dict[str, Path] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def folder_name(name: str, taken: set[str]) -> str:
    """A file-system-safe, unique folder name for a classifier's run."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "classifier"
    candidate, i = base, 2
    while candidate in taken:
        candidate, i = f"{base}-{i}", i + 1
    taken.add(candidate)
    return candidate


def split_options(
    specs: list[str], options: dict[str, Any], registry_specs: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Per-classifier options: `SPEC.key=value` goes to that classifier only; a bare `key=value` to every classifier
    that takes that option (an option none of them takes is an error)."""
    registry_specs = set(specs) if registry_specs is None else registry_specs
    per: dict[str, dict[str, Any]] = {s: {} for s in specs}
    takes = {s: registry.get("classifier", s.partition(":")[0]).options() if s in registry_specs else [] for s in specs}
    for key, value in options.items():
        owners = [s for s in specs if key.startswith(f"{s}.")]
        if owners:
            owner = max(owners, key=len)
            per[owner][key[len(owner) + 1 :]] = value
            continue
        wanting = [s for s in specs if takes[s] is None or key in takes[s]]
        if not wanting:
            known = sorted({k for t in takes.values() if t for k in t})
            raise registry.OptionError(
                f"no classifier among {', '.join(specs)} takes option {key!r}{registry.did_you_mean(key, known)}"
            )
        for s in wanting:
            per[s][key] = value
    return per


def evaluate_many(
    classifiers: list[str | SafetyClassifier],
    dataset: str | Path | Dataset,
    out_dir: str | Path | None = None,
    *,
    classifier_options: dict[str, Any] | None = None,
    compare_published: str | None = "auto",
    split: str | None = None,
    streaming: bool = False,
    allow_outside_root: bool = False,
    url_hosts: list[str] | None = None,
    **evaluate_options: Any,
) -> ManyResult:
    """Evaluate each classifier on `dataset` (loaded once) into OUT_DIR/<classifier>/, then write the leaderboard into
    OUT_DIR. `classifier_options`: `key` for all, `SPEC.key` for one. `compare_published`: "unsafebench", None, or
    "auto" (UnsafeBench's published figures when the dataset is UnsafeBench). Other options go to `evaluate`."""
    if not classifiers:
        raise ValueError("give at least one classifier")
    specs = [c if isinstance(c, str) else c.name for c in classifiers]
    if len(set(specs)) != len(specs):
        raise ValueError(f"a classifier is named twice: {', '.join(s for s in specs if specs.count(s) > 1)}")
    options = split_options(specs, classifier_options or {}, {c for c in classifiers if isinstance(c, str)})
    local = evaluate_options.get("engine", "local") in ("local", None)
    # built up front (a missing checkpoint fails now); on Ray each spec is built by the cluster's workers instead
    built = [
        registry.build("classifier", c, **options[s]) if isinstance(c, str) and local else c
        for c, s in zip(classifiers, specs)
    ]
    calibrate = evaluate_options.get("calibrate")
    splits = sorted({split, calibrate} - {None}) if split else None
    data = (
        load_dataset(
            dataset, splits=splits, streaming=streaming, allow_outside_root=allow_outside_root, url_hosts=url_hosts
        )
        if isinstance(dataset, (str, Path))
        else dataset
    )
    out = Path(out_dir) if out_dir is not None else None
    taken: set[str] = set()
    results: dict[str, EvalResult] = {}
    entries: list[RunEntry] = []
    failed: dict[str, str] = {}
    for spec, clf in zip(specs, built):
        run_dir = out / folder_name(spec, taken) if out is not None else None
        try:
            results[spec] = evaluate(
                clf,
                data,
                run_dir,
                split=split,
                description=f"eval {spec}",
                classifier_options=options[spec] if isinstance(clf, str) else None,
                **evaluate_options,
            )
        except RunFailed as exc:
            failed[spec] = str(exc).splitlines()[0]
            continue
        entries.append(RunEntry(results[spec].document.classifier.name, run_dir or Path(spec), results[spec].document))
    board, files = None, {}
    if entries:
        if compare_published == "auto":
            compare_published = "unsafebench" if unsafebench_dataset(entries) else None
        board = build_leaderboard(entries, compare_published)
        if out is not None:
            from imagesafety.bench.report.leaderboard_files import write_leaderboard

            files = write_leaderboard(board, out)
            write_atomic(out / RUN_ORDER, "".join(f"{e.folder.name}\n" for e in entries))
    result = ManyResult(results, board, files, failed)
    if failed:
        listed = "; ".join(f"{spec}: {why}" for spec, why in failed.items())
        done = f" (the {len(results)} others were written, with the leaderboard)" if results else ""
        error = ManyRunsFailed(f"{len(failed)} of {len(specs)} runs failed{done}: {listed}")
        error.result = result
        raise error
    return result


def compare_with_published(result: EvalResult, out_dir: str | Path | None, compare_published: str | None = "auto"):
    """One run beside its published figures: (leaderboard, files written) when a published table applies, else None."""
    entry = RunEntry(result.document.classifier.name, Path(out_dir or "."), result.document)
    if compare_published == "auto":
        compare_published = "unsafebench" if unsafebench_dataset([entry]) else None
    if not compare_published:
        return None
    board = build_leaderboard([entry], compare_published)
    if out_dir is None:
        return board, {}
    from imagesafety.bench.report.leaderboard_files import write_leaderboard

    return board, write_leaderboard(board, out_dir)
