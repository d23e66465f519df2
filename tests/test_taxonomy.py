import pytest

from imagesafety.taxonomy import LLAVAGUARD, UNSAFEBENCH, load_taxonomy, map_category


def test_builtin_taxonomies_have_the_published_categories():
    assert len(UNSAFEBENCH) == 11 and len(LLAVAGUARD) == 9
    assert UNSAFEBENCH.keys[:5] == ["hate", "harassment", "violence", "self_harm", "sexual"]
    assert [c.code for c in LLAVAGUARD] == [f"O{i}" for i in range(1, 10)]
    assert LLAVAGUARD.get("O4").name == "Nudity Content"


def test_lookup_by_name_key_code_and_alias_any_case():
    assert UNSAFEBENCH.get("Self-harm").key == "self_harm"
    assert UNSAFEBENCH.get("ILLEGAL ACTIVITY").key == "illegal_activity"
    assert UNSAFEBENCH.get("illegal").key == "illegal_activity"
    assert LLAVAGUARD.get("o7").name == "Self-Harm"
    with pytest.raises(KeyError, match="unknown category 'gore'.*hate, harassment"):
        UNSAFEBENCH.get("gore")


def test_mapping_between_unsafebench_and_llavaguard():
    assert [c.code for c in map_category("sexual", UNSAFEBENCH, LLAVAGUARD)] == ["O3", "O4"]
    assert map_category("political", UNSAFEBENCH, LLAVAGUARD) == []
    assert [c.key for c in map_category("O1", LLAVAGUARD, UNSAFEBENCH)] == ["hate", "harassment"]


def test_user_taxonomy_from_yaml(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "name: shop\ncategories:\n  - name: Counterfeit goods\n    description: Fake brand products.\n  - name: "
        "Weapons\n"
    )
    tax = load_taxonomy(path)
    assert tax.name == "shop" and tax.keys == ["counterfeit_goods", "weapons"]
    assert tax.get("Counterfeit Goods").description == "Fake brand products."
    mapping = tmp_path / "short.yaml"
    mapping.write_text("categories:\n  Drugs: Illegal drugs.\n")
    assert load_taxonomy(mapping).get("drugs").description == "Illegal drugs."


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\n", "needs a top-level 'categories'"),
        ("categories: []\n", "non-empty"),
        ("categories:\n  - description: d\n", "#1 needs a 'name'"),
    ],
)
def test_bad_taxonomy_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_taxonomy(path)


def test_unknown_taxonomy_name():
    with pytest.raises(ValueError, match="unknown taxonomy 'nope'"):
        load_taxonomy("nope")


def test_taxonomy_round_trips_through_dict():
    from imagesafety.taxonomy import Taxonomy

    assert Taxonomy.from_dict(LLAVAGUARD.to_dict()) == LLAVAGUARD
