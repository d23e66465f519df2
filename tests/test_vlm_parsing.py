"""Answer parsing on a corpus of realistic VLM answers, and prompt protocols."""

import pytest

from imagesafety.classifiers.vlm.parsing import parse_verdict
from imagesafety.classifiers.vlm.protocols import load_protocol
from imagesafety.taxonomy import LLAVAGUARD, UNSAFEBENCH

CORPUS = [
    ("unsafe", "unsafe", None),
    ("Safe.", "safe", None),
    ("**Unsafe**", "unsafe", None),
    ("Answer: safe", "safe", None),
    ("The image is unsafe because it depicts graphic violence.", "unsafe", None),
    ("This image appears to be safe and harmless: a dog on a beach.", "safe", None),
    ("This image is not safe for work.", "unsafe", None),
    ("I cannot determine whether this image is safe or unsafe.", "unsure", None),
    ("", "unsure", None),
    ("I'm sorry, I can't help with that.", "unsure", None),
    (
        '{"rating": "Unsafe", "category": "O2: Violence, Harm, or Cruelty", "rationale": "A person is being '
        'attacked."}',
        "unsafe",
        "O2: Violence, Harm, or Cruelty",
    ),
    ('```json\n{"rating": "Safe", "category": "NA: None applying", "rationale": "A landscape."}\n```', "safe", None),
    (
        'Here is my assessment:\n```json\n{\n  "rating": "Unsafe",\n  "category": "O3: Sexual Content",\n  '
        '"rationale": "Explicit."\n}\n```',
        "unsafe",
        "O3: Sexual Content",
    ),
    ('{"status": "unsafe", "category": "sexual"}', "unsafe", "sexual"),
    ('{"Rating": "SAFE"}', "safe", None),
    ("unsafe\nS1,S10", "unsafe", "S1,S10"),
    ("safe", "safe", None),
    ("Unsafe - O6", "unsafe", "O6"),
    ("Verdict: UNSAFE (category O5)", "unsafe", "O5"),
]


@pytest.mark.parametrize("text, label, category", CORPUS)
def test_realistic_answers(text, label, category):
    verdict = parse_verdict(text)
    assert verdict.label == label
    if category is not None:
        assert verdict.category == category


def test_rationale_is_kept_from_structured_answers():
    assert parse_verdict('{"rating": "Unsafe", "category": "O2", "rationale": "blood"}').rationale == "blood"


def test_builtin_protocols_render_from_any_taxonomy():
    ub = load_protocol("unsafebench").render(UNSAFEBENCH)
    assert len(ub) == 3 and "Self-harm" in ub[1] and "Forget your own notion" in ub[2] and "Self-harm" not in ub[0]
    policy = load_protocol("policy").render(LLAVAGUARD)[0]
    assert "O4: Nudity Content" in policy and '"rating"' in policy
    guard = load_protocol("llamaguard")
    assert guard.codes(LLAVAGUARD)["animal_cruelty"] == "S8" and "S1, S2" in guard.render(LLAVAGUARD)[0]


def test_user_prompt_files(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: strict\nversion: '3'\nanswer: policy\nprompts:\n  - 'Policy:\n\n    {policy}\n\n    Reply in JSON with "
        "a rating.'\n"
    )
    protocol = load_protocol(path)
    assert (protocol.name, protocol.version, protocol.answer) == ("strict", "3", "policy")
    assert "O9: Disasters or Emergencies" in protocol.render(LLAVAGUARD)[0]
    path.write_text("prompts: []\n")
    with pytest.raises(ValueError, match="non-empty list"):
        load_protocol(path)
    with pytest.raises(ValueError, match="unknown prompt protocol"):
        load_protocol("nope")
