"""Study 1's final-list label balance: seeded down-sampling of the majority label, order kept."""

from __future__ import annotations

from talltales.mwe.filters import balance_labels

YN = [" Yes", " No"]


def items(labels):
    return [{"prompt": f" Q{i}?", "classes": YN, "answer_index": a} for i, a in enumerate(labels)]


def test_the_majority_label_is_down_sampled_to_the_minority_count():
    its = items([0, 0, 0, 0, 0, 1, 0, 1, 0, 0])  # 8 yes, 2 no
    kept, before, after = balance_labels(its, seed=3)
    assert (before, after) == ({" No": 2, " Yes": 8}, {" No": 2, " Yes": 2})
    assert [it["answer_index"] for it in kept].count(0) == 2
    assert [it for it in its if it["answer_index"] == 1] == [it for it in kept if it["answer_index"] == 1]
    positions = [its.index(it) for it in kept]
    assert positions == sorted(positions)  # the original order
    assert balance_labels(its, seed=3)[0] == kept  # seeded
    draws = {tuple(its.index(it) for it in balance_labels(its, seed=s)[0]) for s in range(20)}
    assert len(draws) > 1  # the seed chooses which majority items stay


def test_a_balanced_or_single_label_list_is_kept_whole():
    its = items([0, 1, 1, 0])
    assert balance_labels(its, seed=0)[0] == its
    one = items([0, 0, 0])
    kept, before, after = balance_labels(one, seed=0)
    assert kept == one and before == after == {" Yes": 3}
    assert balance_labels([], seed=0) == ([], {}, {})
