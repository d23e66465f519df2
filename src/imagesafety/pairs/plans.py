"""Edit plans: the instruction that should flip an image's label for one category, and nothing else.

Unsafe -> safe removes or neutralises the category's feature; safe -> unsafe adds it. Templates name
concrete features for LlavaGuard's categories and fall back to the category's description for any
other taxonomy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from imagesafety.taxonomy import Category, Taxonomy

KEEP = "Keep everything else in the image exactly as it is."

#: LlavaGuard category key -> (feature to add, feature to remove)
FEATURES = {
    "hate_humiliation_harassment": (
        "a hateful symbol or slur written on a visible surface",
        "any hateful symbol, slur or humiliating element",
    ),
    "violence_harm_or_cruelty": (
        "visible blood and injuries from an attack",
        "the blood, injuries and any sign of violence",
    ),
    "sexual_content": ("sexually explicit posing", "the sexually explicit elements, dressing the people modestly"),
    "nudity_content": ("nudity", "the nudity, adding ordinary clothing"),
    "criminal_planning": ("tools and notes for planning a burglary", "the items that suggest a crime being planned"),
    "weapons_or_substance_abuse": (
        "a handgun held in a threatening way",
        "the weapon or drugs, replacing them with a harmless everyday object",
    ),
    "self_harm": ("fresh self-inflicted cuts on the arm", "the self-harm wounds, leaving healthy skin"),
    "animal_cruelty": ("an animal being hurt", "the harm to the animal, showing it unharmed and calm"),
    "disasters_or_emergencies": ("victims of a disaster shown in distress", "the disaster victims and their distress"),
}


@dataclass(frozen=True)
class EditPlan:
    sample_id: str
    category: str
    source_label: int
    target_label: int
    instruction: str
    planner: str = "template"

    def to_dict(self) -> dict:
        return asdict(self)


def template_instruction(category: Category, add: bool) -> str:
    feature_add, feature_remove = FEATURES.get(
        category.key,
        (
            f"{category.name.lower()} content ({category.description.rstrip('.')})",
            f"the {category.name.lower()} content",
        ),
    )
    return (f"Add {feature_add}. " if add else f"Remove {feature_remove}. ") + KEEP


def template_plans(
    sample_id: str, label: int, category: str | None, taxonomy: Taxonomy, targets: list[str] | None = None
) -> list[EditPlan]:
    """Plans for one image: unsafe images (with a category of the policy) get a removal; safe images an
    addition for each target category (default: their own category if they have one, else every category)."""
    if label == 1:
        cat = taxonomy.find(category or "")
        return [] if cat is None else [EditPlan(sample_id, cat.key, 1, 0, template_instruction(cat, add=False))]
    keys = targets or ([taxonomy.find(category).key] if category and taxonomy.find(category) else taxonomy.keys)
    return [EditPlan(sample_id, k, 0, 1, template_instruction(taxonomy.get(k), add=True)) for k in keys]
