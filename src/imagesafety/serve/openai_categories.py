"""Our categories expressed in OpenAI's moderation categories, so the official client reads our answers."""

from __future__ import annotations

OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

#: OpenAI categories whose `category_applied_input_types` may list "image" (openai-openapi's CreateModerationResponse:
#: the others admit only "text"); a score of ours on another category is still reported and can flag, with the input
#: type under `imagesafety.category_applied_input_types`.
IMAGE_APPLICABLE = frozenset(
    {"self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "violence", "violence/graphic"}
)

#: taxonomy category key -> OpenAI categories it counts towards (UnsafeBench keys and LlavaGuard keys).
TO_OPENAI: dict[str, tuple[str, ...]] = {
    "hate": ("hate",),
    "harassment": ("harassment",),
    "violence": ("violence",),
    "self_harm": ("self-harm",),
    "sexual": ("sexual",),
    "shocking": ("violence/graphic",),
    "illegal_activity": ("illicit",),
    "hate_humiliation_harassment": ("hate", "harassment"),
    "violence_harm_or_cruelty": ("violence",),
    "sexual_content": ("sexual",),
    "nudity_content": ("sexual",),
    "criminal_planning": ("illicit",),
    "weapons_or_substance_abuse": ("illicit/violent",),
    "animal_cruelty": ("violence",),
    "disasters_or_emergencies": ("violence/graphic",),
}


def moderation_result(scores: dict[str, float], flagged_categories: set[str]) -> dict:
    """`categories`, `category_scores` and `category_applied_input_types` over OpenAI's names; a category of ours with
    no OpenAI counterpart appears once, under its own key (never both names for one category). "image" is listed as an
    applied input type only where OpenAI's schema admits it; `applied_input_types` holds every scored category."""
    categories = {c: False for c in OPENAI_CATEGORIES}
    category_scores = {c: 0.0 for c in OPENAI_CATEGORIES}
    applied: dict[str, list[str]] = {c: [] for c in OPENAI_CATEGORIES}
    for key, score in scores.items():
        names = TO_OPENAI.get(key) or (key,)
        for name in names:
            category_scores[name] = max(category_scores.get(name, 0.0), float(score))
            categories[name] = categories.get(name, False) or key in flagged_categories
            applied[name] = ["image"]
    openai_applied = {c: (v if c in IMAGE_APPLICABLE or c not in OPENAI_CATEGORIES else []) for c, v in applied.items()}
    return {
        "categories": categories,
        "category_scores": category_scores,
        "category_applied_input_types": openai_applied,
        "applied_input_types": {c: v for c, v in applied.items() if v},
    }
