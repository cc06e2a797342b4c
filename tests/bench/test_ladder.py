"""The ladders' stopping rule, on fake attacks: no rung above the first broken one runs."""

from __future__ import annotations

from patchcrypt.bench import LADDER, PAIRS_LADDER, broken_by, climb, rungs


def fake_step(breaks_at: int, calls: list):
    """An attack that reads everything from ``breaks_at`` images on, and nothing below."""

    def step(n: int):
        calls.append(n)
        return [{"attack": "fr", "readable": 0.0}, {"attack": "many", "readable": 1.0 if n >= breaks_at else 0.1}]

    return step


def test_the_ladder_is_the_issues():
    assert LADDER == (1, 3, 10, 30, 100, 300, 1000, 3000)
    assert PAIRS_LADDER[0] == 1


def test_stops_at_the_first_broken_rung():
    calls = []
    out = climb(fake_step(30, calls), LADDER)
    assert out["to_break"] == 30 and out["by"] == "many" and out["largest_tried"] == 30
    assert calls == [1, 3, 10, 30]                  # nothing above the first broken rung ran
    assert [r["broken"] for r in out["rungs"]] == [False, False, False, True]


def test_between_rungs_counts_as_the_next_rung():
    calls = []
    assert climb(fake_step(11, calls), LADDER)["to_break"] == 30


def test_not_broken_is_null_with_the_largest_rung_tried():
    calls = []
    out = climb(fake_step(10 ** 9, calls), rungs(LADDER, 100))
    assert out["to_break"] is None and out["by"] is None and out["largest_tried"] == 100
    assert calls == [1, 3, 10, 30, 100]


def test_broken_at_one_image_runs_one_rung():
    calls = []
    assert climb(fake_step(1, calls), LADDER)["to_break"] == 1 and calls == [1]


def test_without_the_stop_every_rung_runs_and_the_smallest_is_kept():
    calls = []
    out = climb(fake_step(3, calls), rungs(LADDER, 30), stop_when_broken=False)
    assert out["to_break"] == 3 and calls == [1, 3, 10, 30]


def test_half_the_images_is_broken_just_under_is_not():
    assert broken_by([{"attack": "a", "readable": 0.5}])["attack"] == "a"
    assert broken_by([{"attack": "a", "readable": 0.499}, {"attack": "b", "readable": None}]) is None


def test_rungs_are_capped_by_the_preset_and_the_images_there_are():
    assert rungs(LADDER, 1000) == [1, 3, 10, 30, 100, 300, 1000]
    assert rungs(LADDER, 50) == [1, 3, 10, 30]
    assert rungs(LADDER, 0) == [1]


def test_each_rung_is_reported_as_it_finishes():
    seen = []
    climb(fake_step(10, []), LADDER, on_rung=lambda r: seen.append(r["n"]))
    assert seen == [1, 3, 10]
