"""Reading a model's answer as safe / unsafe / unsure (+ category, rationale), from JSON, markdown or free text."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

SAFE, UNSAFE, UNSURE = "safe", "unsafe", "unsure"

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_UNSAFE_WORDS = re.compile(r"\b(unsafe|not\s+safe|nsfw|inappropriate|harmful|violat(?:es|ing|ion))\b", re.I)
_SAFE_WORDS = re.compile(r"(?<!un)(?<!not )\b(safe|harmless|appropriate|sfw)\b", re.I)
_CODES = re.compile(r"\b([SO]\d{1,2})\b")


@dataclass
class Verdict:
    label: str  # safe | unsafe | unsure
    category: str | None = None  # a code (O3, S12) or a category name, as the model wrote it
    rationale: str | None = None


def _json_objects(text: str):
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            depth = 0
            for end in range(start, len(candidate)):
                depth += {"{": 1, "}": -1}.get(candidate[end], 0)
                if depth == 0:
                    try:
                        obj = json.loads(candidate[start : end + 1])
                        if isinstance(obj, dict):
                            yield obj
                    except json.JSONDecodeError:
                        pass
                    break
            start = candidate.find("{", start + 1)


def _label_of(value: str) -> str | None:
    v = value.strip().lower()
    if re.match(r"^(unsafe|not safe|nsfw|violat)", v):
        return UNSAFE
    if re.match(r"^(safe|sfw|harmless)", v):
        return SAFE
    if v.startswith(("unsure", "uncertain", "unknown", "review needed")):
        return UNSURE
    return None


def parse_verdict(text: str | None) -> Verdict:
    """The verdict in a model's answer; `unsure` when it cannot be read or says both."""
    if not text or not text.strip():
        return Verdict(UNSURE)
    for obj in _json_objects(text):
        lowered = {str(k).lower(): v for k, v in obj.items()}
        for key in ("rating", "status", "verdict", "safety", "label", "decision", "answer", "assessment"):
            if isinstance(lowered.get(key), str) and _label_of(lowered[key]):
                category = lowered.get("category") or lowered.get("categories")
                if isinstance(category, list):
                    category = ",".join(map(str, category))
                if isinstance(category, str) and re.match(r"^\s*(na|none|n/a)\b", category, re.I):
                    category = None
                rationale = lowered.get("rationale") or lowered.get("reason") or lowered.get("explanation")
                return Verdict(_label_of(lowered[key]), category, rationale if isinstance(rationale, str) else None)
    cleaned = re.sub(r"[*_`#>\[\]]", " ", text).strip()
    first_line = cleaned.splitlines()[0].strip() if cleaned else ""
    lead = _label_of(re.sub(r"^(answer|verdict|rating|status|classification)\s*[:\-]\s*", "", first_line, flags=re.I))
    if lead is not None:
        codes = _CODES.findall(cleaned) if lead == UNSAFE else []
        return Verdict(lead, ",".join(codes) or None, cleaned if len(cleaned) > len(first_line) else None)
    unsafe_hits = len(_UNSAFE_WORDS.findall(cleaned))
    safe_hits = len(_SAFE_WORDS.findall(cleaned))
    if unsafe_hits and not safe_hits:
        return Verdict(UNSAFE, ",".join(_CODES.findall(cleaned)) or None, cleaned)
    if safe_hits and not unsafe_hits:
        return Verdict(SAFE, None, cleaned)
    return Verdict(UNSURE, None, cleaned)
