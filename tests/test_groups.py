"""--groups FILE: the three formats and their errors."""

from __future__ import annotations

import pytest

from planner.errors import InputError
from planner.recommend.groups import parse_groups


def test_yaml_maps_aggregates_to_hosts():
    assert parse_groups(b"fast: [cn1, cn2]\nlegacy:\n  - cn3\n", "g.yaml") == {
        "cn1": "fast", "cn2": "fast", "cn3": "legacy"}


def test_csv_rows_with_an_optional_header():
    assert parse_groups(b"host,aggregate\ncn1,fast\n\ncn3, legacy\n", "g.csv") == {
        "cn1": "fast", "cn3": "legacy"}


def test_ansible_inventory_sections_ignore_vars_and_host_variables():
    text = b"[fast]\ncn1 ansible_host=10.0.0.1\ncn2\n[fast:vars]\nx=1\n[legacy]\ncn3\n"
    assert parse_groups(text, "inventory") == {"cn1": "fast", "cn2": "fast", "cn3": "legacy"}


@pytest.mark.parametrize("data,name,msg", [
    (b"a: [cn1]\nb: [cn1]\n", "g.yaml", "two aggregates"),
    (b"[a\n", "g.yaml", "not valid YAML"),
    (b"- cn1\n", "g.yml", "expected a mapping"),
    (b"cn1\n", "g.csv", "expected host,aggregate"),
    (b"cn1\n[a]\n", "g.ini", "before any [aggregate]"),
    (b"", "g.ini", "no hosts"),
    (b"\xff\xfe", "g.ini", "not UTF-8"),
])
def test_bad_groups_files_are_clear_errors(data, name, msg):
    with pytest.raises(InputError, match=msg.replace("[", r"\[")):
        parse_groups(data, name)
