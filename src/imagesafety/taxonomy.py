"""Safety taxonomies: UnsafeBench's 11 categories, LlavaGuard's 9, a mapping, and user YAML files."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@functools.lru_cache(maxsize=4096)  # a dataset's few category names, once per row
def slugify(name: str) -> str:
    """Lower-case key for a category name: 'Self-harm' -> 'self_harm'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass(frozen=True)
class Category:
    """One category of a taxonomy; `key` is the stable identifier used in files and columns."""

    key: str
    name: str
    description: str = ""
    code: str | None = None  # e.g. "O3" in LlavaGuard's policy


@dataclass(frozen=True)
class Taxonomy:
    """An ordered set of categories with lookup by key, name or code."""

    name: str
    categories: tuple[Category, ...]
    aliases: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        keys = [c.key for c in self.categories]
        if len(set(keys)) != len(keys):
            raise ValueError(f"taxonomy {self.name!r} has duplicate category keys: {keys}")

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.categories]

    def __iter__(self):
        return iter(self.categories)

    def __len__(self) -> int:
        return len(self.categories)

    def __contains__(self, name: str) -> bool:
        return self.find(name) is not None

    def find(self, name: str) -> Category | None:
        """The category called `name` (key, display name, code or alias, any case), or None."""
        wanted = slugify(name)
        wanted = slugify(self.aliases.get(wanted, wanted))
        for c in self.categories:
            if wanted in (c.key, slugify(c.name)) or (c.code and wanted == slugify(c.code)):
                return c
        return None

    def get(self, name: str) -> Category:
        """Like `find`, but raises a KeyError listing the valid names."""
        found = self.find(name)
        if found is None:
            raise KeyError(f"unknown category {name!r} in taxonomy {self.name!r}; known: {', '.join(self.keys)}")
        return found

    @classmethod
    def from_dict(cls, data: dict) -> Taxonomy:
        """Inverse of `to_dict`."""
        cats = tuple(
            Category(str(c["key"]), str(c["name"]), str(c.get("description", "")), c.get("code"))
            for c in data["categories"]
        )
        return cls(str(data["name"]), cats)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "categories": [
                {"key": c.key, "name": c.name, "description": c.description, **({"code": c.code} if c.code else {})}
                for c in self.categories
            ],
        }


def _cat(name: str, description: str, code: str | None = None) -> Category:
    return Category(slugify(name), name, description, code)


UNSAFEBENCH = Taxonomy(
    "unsafebench",
    (
        _cat(
            "Hate", "Hateful symbols, negative stereotypes, or content that demeans a group for a protected attribute."
        ),
        _cat("Harassment", "Mocking, threatening, or bullying an individual."),
        _cat("Violence", "Violent acts, suffering or humiliation of others; gore."),
        _cat("Self-harm", "Suicide, cutting, eating disorders or other attempts at harming oneself."),
        _cat("Sexual", "Nudity, sexual acts, sexual services, or content meant to arouse sexual excitement."),
        _cat("Shocking", "Bodily fluids, obscene gestures, or other profane subjects that may shock or disgust."),
        _cat("Illegal activity", "Drug use, theft, vandalism, and other illegal activities."),
        _cat("Deception", "Major conspiracies or events related to major ongoing geopolitical events."),
        _cat(
            "Political",
            "Politicians, ballot-boxes, protests, or other content that may be used to influence the political "
            "process.",
        ),
        _cat(
            "Public and personal health",
            "The treatment, prevention, diagnosis or transmission of diseases, or people experiencing health ailments.",
        ),
        _cat("Spam", "Unsolicited bulk content."),
    ),
    aliases={
        "self_harm": "self_harm",
        "selfharm": "self_harm",
        "illegal": "illegal_activity",
        "health": "public_and_personal_health",
    },
)

LLAVAGUARD = Taxonomy(
    "llavaguard",
    (
        _cat(
            "Hate, Humiliation, Harassment",
            "Hateful, humiliating or harassing content targeting people for who they are.",
            "O1",
        ),
        _cat(
            "Violence, Harm, or Cruelty",
            "Violence, harm or cruelty towards people, including planning or glorifying it.",
            "O2",
        ),
        _cat("Sexual Content", "Sexually explicit content or content meant to arouse.", "O3"),
        _cat("Nudity Content", "Visible genitalia, breasts or buttocks, including artistic nudity.", "O4"),
        _cat("Criminal Planning", "Planning or executing crimes such as theft, kidnapping or financial crimes.", "O5"),
        _cat(
            "Weapons or Substance Abuse", "Weapons used to harm, illegal drugs, or abuse of alcohol and tobacco.", "O6"
        ),
        _cat("Self-Harm", "Suicide, self-injury, or encouragement of self-harm.", "O7"),
        _cat("Animal Cruelty", "Harm or cruelty to animals.", "O8"),
        _cat(
            "Disasters or Emergencies",
            "Victims of disasters or emergencies, depicted in a way that exploits their suffering.",
            "O9",
        ),
    ),
)


def _coded(name: str, codes: tuple[tuple[str, str], ...]) -> Taxonomy:
    """A benchmark's own taxonomy whose keys are its codes (VLSU's C1-C15)."""
    return Taxonomy(name, tuple(Category(code.lower(), title, title, code) for code, title in codes))


#: Apple's VLSU (Vision-Language Safety Understanding), categories by code.
VLSU = _coded(
    "vlsu",
    (
        ("C1", "Slurs, Hate Speech, Hate Symbols"),
        ("C2", "Discrimination and Unequal Treatment"),
        ("C3", "Drug Abuse"),
        ("C4", "Self-Harm and Suicide"),
        ("C5", "Animal Violence and Gore"),
        ("C6", "Adult Explicit Sexual Material"),
        ("C7", "Adult Racy Material"),
        ("C8", "Warfare and Armed Conflicts"),
        ("C9", "Interpersonal Violence"),
        ("C10", "Weapons and Dangerous Objects"),
        ("C11", "Gore and Graphic Content"),
        ("C12", "Terrorism and Violent Extremism"),
        ("C13", "Jailbreaks"),
        ("C14", "Inauthentic Practices/Fraud"),
        ("C15", "Human Exploitation"),
    ),
)
#: VLGuard's four harmful categories.
VLGUARD = Taxonomy(
    "vlguard",
    (
        _cat("Privacy", "Personal data and other private information."),
        _cat("Risky Behavior", "Professional advice, political content, sexually explicit content, violence."),
        _cat("Deception", "Disinformation."),
        _cat("Hateful Speech", "Discrimination by sex, race or other attributes."),
    ),
)
#: SafeWatch-Bench's six video categories (its authors' evaluation names them C1-C6).
SAFEWATCH = _coded(
    "safewatch",
    (
        ("C1", "Sexual Content"),
        ("C2", "Harassment & Bullying"),
        ("C3", "Threats, Violence & Harm"),
        ("C4", "False & Deceptive Information"),
        ("C5", "Illegal/Regulated Activities"),
        ("C6", "Hateful Content & Extremism"),
    ),
)
#: SafeEditBench's five fictional policy levels, from permissive (L1) to restrictive (L5).
SAFEEDITBENCH = Taxonomy(
    "safeeditbench",
    tuple(
        _cat(f"Policy L{i}", setting)
        for i, setting in enumerate(
            (
                "Libertarian anarchy",
                "Free-speech internet era",
                "Capitalist corporatocracy",
                "Collectivist dystopia",
                "Extreme theocracy",
            ),
            start=1,
        )
    ),
)

BUILTIN_TAXONOMIES: dict[str, Taxonomy] = {
    t.name: t for t in (UNSAFEBENCH, LLAVAGUARD, VLSU, VLGUARD, SAFEEDITBENCH, SAFEWATCH)
}

# UnsafeBench category key -> LlavaGuard category keys that cover it (empty: no counterpart).
UNSAFEBENCH_TO_LLAVAGUARD: dict[str, tuple[str, ...]] = {
    "hate": ("o1",),
    "harassment": ("o1",),
    "violence": ("o2", "o8"),
    "self_harm": ("o7",),
    "sexual": ("o3", "o4"),
    "shocking": ("o2", "o9"),
    "illegal_activity": ("o5", "o6"),
    "deception": (),
    "political": (),
    "public_and_personal_health": (),
    "spam": (),
}


def map_category(key: str, source: Taxonomy, target: Taxonomy) -> list[Category]:
    """Categories of `target` that correspond to category `key` of `source` (UnsafeBench <-> LlavaGuard)."""
    cat = source.get(key)
    if source.name == target.name:
        return [cat]
    forward = {(UNSAFEBENCH.name, LLAVAGUARD.name): UNSAFEBENCH_TO_LLAVAGUARD}
    backward: dict[str, list[str]] = {}
    for ub, lgs in UNSAFEBENCH_TO_LLAVAGUARD.items():
        for lg in lgs:
            backward.setdefault(lg, []).append(ub)
    if (source.name, target.name) in forward:
        return [target.get(code) for code in forward[(source.name, target.name)][cat.key]]
    if (source.name, target.name) == (LLAVAGUARD.name, UNSAFEBENCH.name):
        return [target.get(k) for k in backward.get(slugify(cat.code or ""), [])]
    raise ValueError(f"no mapping between taxonomies {source.name!r} and {target.name!r}")


def category_label(key: str) -> str:
    """A category's display name from the built-in taxonomies ('self_harm' -> 'Self-harm'); the key itself otherwise."""
    for taxonomy in (UNSAFEBENCH, LLAVAGUARD):
        found = taxonomy.find(key)
        if found:
            return found.name
    return key


def load_taxonomy(spec: str | Path | Taxonomy) -> Taxonomy:
    """A built-in taxonomy by name ('unsafebench', 'llavaguard') or a user taxonomy from a YAML file.

    The YAML file holds `name` and `categories`, a list of {name, description[, key, code]}
    (or a mapping name -> description).
    """
    if isinstance(spec, Taxonomy):
        return spec
    text = str(spec)
    if text.lower() in BUILTIN_TAXONOMIES:
        return BUILTIN_TAXONOMIES[text.lower()]
    path = Path(text)
    if not path.exists():
        raise ValueError(f"unknown taxonomy {text!r}: give one of {sorted(BUILTIN_TAXONOMIES)} or a YAML file path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "categories" not in data:
        raise ValueError(f"{path}: a taxonomy file needs a top-level 'categories' list")
    raw = data["categories"]
    if isinstance(raw, dict):
        raw = [{"name": k, "description": v} for k, v in raw.items()]
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: 'categories' must be a non-empty list")
    cats = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not item.get("name"):
            raise ValueError(f"{path}: category #{i + 1} needs a 'name'")
        cats.append(
            Category(
                key=str(item.get("key") or slugify(str(item["name"]))),
                name=str(item["name"]),
                description=str(item.get("description", "")),
                code=item.get("code"),
            )
        )
    return Taxonomy(str(data.get("name") or path.stem), tuple(cats))
