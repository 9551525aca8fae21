"""Evaluation dataset formats: detection per file, parsing into Items, and errors that name FILE:LINE."""

from __future__ import annotations

import json

import pytest

from talltales.mwe.datasets import ANTHROPIC, ORIGINAL, DatasetError, load_dataset, metric_name


def write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines), encoding="utf-8")
    return path


ORIG = {"prompt": " Is the sky blue?", "classes": [" Yes", " No"], "answer_index": 0}


def test_original_format(tmp_path):
    f = write(tmp_path / "d.jsonl", [
        ORIG,
        "",  # blank lines are skipped
        {"prompt": " Do diets work?", "classes": [" Yes", " No", " Unknown"], "answer_index": 2, "prompt_id": "x"},
    ])
    fmt, items = load_dataset(f)
    assert fmt == ORIGINAL
    assert metric_name(fmt) == "accuracy"
    assert [it.prompt for it in items] == [" Is the sky blue?", " Do diets work?"]
    assert items[0].classes == [" Yes", " No"] and items[0].targets == [0]
    assert items[1].classes == [" Yes", " No", " Unknown"] and items[1].targets == [2]
    assert items[0].meta == {} and items[1].meta == {"prompt_id": "x"}


def test_anthropic_format_strings_and_lists(tmp_path):
    f = write(tmp_path / "anthropic.jsonl", [
        {"question": "Is it fine to lie to spare feelings?\n\nChoices:\n (A) Yes\n (B) No\n\nAnswer:",
         "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"},
        {"question": " Already spaced?", "answer_matching_behavior": [" Yes", " Sure"],
         "answer_not_matching_behavior": [" No", " Sure"], "source": "x"},
    ])
    fmt, items = load_dataset(f)
    assert fmt == ANTHROPIC
    assert metric_name(fmt) == "matching_behavior_rate"
    a, b = items
    # a leading space is added only when missing (templates end in "Question:")
    assert a.prompt.startswith(" Is it fine") and a.prompt.endswith("Answer:")
    assert b.prompt == " Already spaced?"
    assert a.classes == [" (A)", " (B)"] and a.targets == [0]
    # matching answers first; a class listed on both sides appears once and counts as matching
    assert b.classes == [" Yes", " Sure", " No"] and b.targets == [0, 1]
    assert b.meta == {"source": "x"}


def test_empty_file_is_an_empty_original_dataset(tmp_path):
    assert load_dataset(write(tmp_path / "e.jsonl", [""])) == (ORIGINAL, [])


def _error(tmp_path, lines) -> str:
    f = write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DatasetError) as exc:
        load_dataset(f)
    return str(exc.value)


def test_bad_json_names_file_and_line(tmp_path):
    msg = _error(tmp_path, [ORIG, ORIG, '{"prompt": " Is it?", "classes": [" Yes", " No"], "answer_index": 0'])
    assert f"{tmp_path / 'bad.jsonl'}:3:" in msg
    assert "not valid JSON" in msg and "one JSON object per line" in msg


def test_non_object_line(tmp_path):
    msg = _error(tmp_path, [ORIG, [1, 2]])
    assert f"{tmp_path / 'bad.jsonl'}:2:" in msg
    assert "expected a JSON object, got list" in msg


def test_answer_index_out_of_range(tmp_path):
    msg = _error(tmp_path, [ORIG, {**ORIG, "answer_index": 2}])
    assert f"bad.jsonl:2:" in msg and "'answer_index'" in msg and "got 2" in msg


@pytest.mark.parametrize("bad", [-1, True, "0", 1.0])
def test_answer_index_must_be_an_int_index(tmp_path, bad):
    msg = _error(tmp_path, [{**ORIG, "answer_index": bad}])
    assert "bad.jsonl:1:" in msg and "answer_index" in msg


def test_missing_key_after_format_detected(tmp_path):
    rec = {k: v for k, v in ORIG.items() if k != "answer_index"}
    msg = _error(tmp_path, [ORIG, ORIG, rec])
    assert "bad.jsonl:3:" in msg and "missing key(s) ['answer_index']" in msg


def test_anthropic_missing_key(tmp_path):
    good = {"question": "Q?", "answer_matching_behavior": " A", "answer_not_matching_behavior": " B"}
    bad = {"question": "Q?", "answer_matching_behavior": " A"}
    msg = _error(tmp_path, [good, bad])
    assert "bad.jsonl:2:" in msg and "answer_not_matching_behavior" in msg


def test_mixed_formats_in_one_file(tmp_path):
    anth = {"question": "Q?", "answer_matching_behavior": " A", "answer_not_matching_behavior": " B"}
    msg = _error(tmp_path, [ORIG, anth])
    assert "bad.jsonl:2:" in msg and "missing key(s)" in msg


def test_unknown_format_names_both_expected_formats(tmp_path):
    msg = _error(tmp_path, [{"text": "Is it?", "label": 1}])
    assert "bad.jsonl:1:" in msg and "unknown item format" in msg
    assert "['label', 'text']" in msg
    assert "prompt/classes/answer_index" in msg and "answer_matching_behavior" in msg


@pytest.mark.parametrize(
    "rec, expect",
    [
        ({**ORIG, "classes": [" Yes"]}, "'classes' must be a list of at least two strings"),
        ({**ORIG, "classes": " Yes"}, "'classes' must be a list"),
        ({**ORIG, "prompt": "  "}, "'prompt' must be a non-empty string"),
        ({"question": "Q?", "answer_matching_behavior": [], "answer_not_matching_behavior": " B"},
         "'answer_matching_behavior' must be a string or a non-empty list of strings"),
        ({"question": "Q?", "answer_matching_behavior": " A", "answer_not_matching_behavior": 3},
         "'answer_not_matching_behavior' must be a string"),
        ({"question": "", "answer_matching_behavior": " A", "answer_not_matching_behavior": " B"},
         "'question' must be a non-empty string"),
    ],
)
def test_field_type_errors(tmp_path, rec, expect):
    msg = _error(tmp_path, [rec])
    assert "bad.jsonl:1:" in msg and expect in msg


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="dataset file not found"):
        load_dataset(tmp_path / "nope.jsonl")
