"""One registry for every plug-in kind: lazy built-ins, entry points read once and loaded only when asked for."""

from importlib.metadata import EntryPoint

import pytest

from imagesafety import registry


def test_every_kind_has_entries_and_every_builtin_target_imports():
    for kind in registry.KINDS:
        entries = registry.entries(kind)
        assert entries, kind
        for entry in entries.values():
            if not entry.missing_modules():
                assert callable(entry.load()), f"{kind} {entry.name}"


def test_unknown_names_are_listed_with_a_suggestion():
    with pytest.raises(
        registry.UnknownEntryError,
        match="unknown classifier 'nudnet'; did you mean 'nudenet'.*registered: .*clip-zeroshot",
    ):
        registry.get("classifier", "nudnet")


def test_options_are_checked_against_the_factory(monkeypatch):
    with pytest.raises(registry.OptionError, match="no option 'lables'; did you mean 'labels'"):
        registry.build("classifier", "nudenet", lables="FEMALE_BREAST_EXPOSED")


def test_a_broken_plugin_breaks_only_itself(monkeypatch):
    """A plug-in whose module raises on import must not break built-in lookups, and is named when asked for."""
    broken = EntryPoint(
        name="broken", value="imagesafety_no_such_plugin.module:factory", group="imagesafety.classifiers"
    )
    good = EntryPoint(name="red", value="test_registry:red_factory", group="imagesafety.classifiers")

    def fake_entry_points(group=None):
        return [broken, good] if group == "imagesafety.classifiers" else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    registry._plugins.cache_clear()
    try:
        entries = registry.entries("classifier")
        assert {"nudenet", "broken", "red"} <= set(entries)  # listed without importing anything
        assert registry.get("classifier", "nudenet").load() is not None
        with pytest.raises(
            registry.PluginError, match="plug-in classifier 'broken'.*failed to load: ModuleNotFoundError"
        ):
            registry.build("classifier", "broken")
        assert registry.build("classifier", "red", fail_on_green=True).config == {"fail_on_green": True}
    finally:
        registry._plugins.cache_clear()


def red_factory(arg, *, fail_on_green=False):
    from conftest import MeanRedClassifier

    return MeanRedClassifier(fail_on_green)


def test_a_plugin_cannot_shadow_a_builtin(monkeypatch):
    shadow = EntryPoint(name="nudenet", value="somewhere:else", group="imagesafety.classifiers")
    monkeypatch.setattr(
        registry, "entry_points", lambda group=None: [shadow] if group == "imagesafety.classifiers" else []
    )
    registry._plugins.cache_clear()
    try:
        assert registry.get("classifier", "nudenet").target == "imagesafety.classifiers.nudenet:from_spec"
    finally:
        registry._plugins.cache_clear()


def test_every_classifier_with_weights_declares_them_as_an_attribute():
    """One declaration pattern: a classifier module that puts its weights' identity in `config` sets `self.weights`
    and repeats it there (read from the source, so classifiers whose weights cannot load here are checked too)."""
    import re
    from pathlib import Path

    root = Path(registry.__file__).parent / "classifiers"
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r'"weights": ([^\n]+)', text):
            if not match.group(1).startswith("self.weights"):
                offenders.append(f"{path.relative_to(root)}: {match.group(0)}")
    assert offenders == []
    from imagesafety.classifiers.base import DeclaresWeights
    from imagesafety.classifiers.nudenet import NudeNetClassifier

    clf = NudeNetClassifier()
    assert (
        isinstance(clf, DeclaresWeights) and clf.config["weights"] == clf.weights and clf.weights.startswith("sha256:")
    )
