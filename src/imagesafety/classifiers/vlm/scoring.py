"""Turning a protocol's answers about one image into a Prediction: parse, apply the unsure policy, vote, account."""

from __future__ import annotations

from imagesafety.classifiers.base import ModelFailure, Prediction, Usage, decide
from imagesafety.classifiers.vlm.parsing import UNSAFE, UNSURE, parse_verdict
from imagesafety.classifiers.vlm.protocols import PromptProtocol, load_protocol
from imagesafety.taxonomy import Taxonomy, load_taxonomy

UNSURE_POLICIES = ("unsafe", "safe", "exclude")


class ProtocolScoring:
    """Shared by every answer-giving classifier: answers are dicts with `text` (and token counts)."""

    def setup_scoring(
        self,
        protocol: str | PromptProtocol,
        taxonomy: str | Taxonomy,
        unsure: str,
        threshold: float,
        price_in: float = 0.0,
        price_out: float = 0.0,
    ) -> None:
        if unsure not in UNSURE_POLICIES:
            raise ValueError(f"unsure must be one of {UNSURE_POLICIES}, got {unsure!r}")
        self.protocol = load_protocol(protocol)
        self.taxonomy = load_taxonomy(taxonomy)
        self.prompts = self.protocol.render(self.taxonomy)
        self.codes = self.protocol.codes(self.taxonomy)
        self.unsure, self.threshold = unsure, float(threshold)
        self.prices = (float(price_in), float(price_out))

    def _category_key(self, written: str | None) -> list[str]:
        if not written:
            return []
        by_code = {code.lower(): key for key, code in self.codes.items()}
        found = []
        for part in str(written).replace(";", ",").split(","):
            token = part.strip().split(":")[0].strip().lower()
            if token in by_code:
                found.append(by_code[token])
            elif self.taxonomy.find(part.split(":")[-1].strip()):
                found.append(self.taxonomy.find(part.split(":")[-1].strip()).key)
        return sorted(set(found))

    def score_answers(self, answers: list[dict]) -> Prediction | ModelFailure:
        verdicts = [parse_verdict(a["text"]) for a in answers]
        votes = []
        for v in verdicts:
            if v.label == UNSURE:
                if self.unsure == "exclude":
                    continue
                votes.append(1.0 if self.unsure == "unsafe" else 0.0)
            else:
                votes.append(1.0 if v.label == UNSAFE else 0.0)
        unsure = sum(v.label == UNSURE for v in verdicts)
        prompt_tokens = sum(a["prompt_tokens"] for a in answers if not a.get("cached"))
        completion_tokens = sum(a["completion_tokens"] for a in answers if not a.get("cached"))
        cost = prompt_tokens / 1000 * self.prices[0] + completion_tokens / 1000 * self.prices[1]
        usage = Usage(prompt_tokens, completion_tokens, cost)
        if not votes:
            return ModelFailure(f"{self.name}: every answer was unsure (excluded by the unsure policy)")
        score = sum(votes) / len(votes)
        category_scores = {}
        if self.protocol.answer in ("policy", "codes"):
            flagged = {k for v in verdicts if v.label == UNSAFE for k in self._category_key(v.category)}
            category_scores = {c.key: (1.0 if c.key in flagged else 0.0) for c in self.taxonomy}
        raw = {
            "answers": [a["text"] for a in answers],
            "verdicts": [v.label for v in verdicts],
            "categories": [v.category for v in verdicts],
            "unsure": unsure,
        }
        return Prediction(score, decide(score, self.threshold), category_scores, raw, usage=usage)
