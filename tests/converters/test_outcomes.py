"""Thresholds chosen for purity, and where each class lands (converters/outcomes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from smartbin.converters.outcomes import choose_thresholds, compartment_of, sorting_outcomes, threshold_sweep
from smartbin.device.config import parse_config

LABELS = ("can", "glass", "plastic", "trash")


def test_the_lowest_threshold_that_keeps_a_label_pure_lies_between_photos():
    # Six photos taken for glass, scores falling; the third (0.7) is really plastic.
    scores = np.array([[0.0, s, 0.0, 1 - s] for s in (0.95, 0.9, 0.7, 0.65, 0.6, 0.55)])
    truth = np.array([1, 1, 2, 1, 1, 1])
    chosen = choose_thresholds(scores, truth, LABELS, purity=0.8)
    # At 0.55 (all six) purity is 5/6 >= 0.8: everything is kept, and nothing is left out below.
    assert chosen["glass"] == {
        "threshold": 0.55,
        "purity": pytest.approx(5 / 6, abs=1e-4),
        "recovery": 1.0,
        "sorted": 6,
        "support": 5,
        "met": True,
    }
    strict = choose_thresholds(scores, truth, LABELS, purity=0.99)["glass"]
    assert strict["threshold"] == pytest.approx(
        (0.9 + 0.7) / 2
    )  # above the plastic photo, below the last pure one
    assert (strict["sorted"], strict["recovery"], strict["met"]) == (2, 0.4, True)
    assert "can" not in chosen  # no photo was taken for a can: no threshold


def test_a_purity_out_of_reach_takes_the_purest_point_and_says_so():
    scores = np.array([[0.9, 0.1, 0, 0], [0.8, 0.2, 0, 0], [0.7, 0.3, 0, 0]])
    truth = np.array([1, 0, 1])  # the most confident can is glass
    chosen = choose_thresholds(scores, truth, LABELS, purity=0.98)["can"]
    assert chosen["met"] is False and chosen["purity"] == 0.5 and chosen["sorted"] == 2


def test_equal_scores_are_kept_or_left_out_together():
    scores = np.array([[0.8, 0.2, 0, 0]] * 3 + [[0.6, 0.4, 0, 0]])
    truth = np.array([0, 0, 3, 3])  # one of the three at 0.8 is trash, and so is the one at 0.6
    chosen = choose_thresholds(scores, truth, LABELS, purity=0.99)
    assert chosen["can"]["met"] is False and chosen["can"]["sorted"] == 3  # never 2 of 3 equal scores


def sorting(**labels):
    return parse_config({"sorting": {"labels": labels}} if labels else {}).sorting


def test_outcomes_count_own_wrong_and_rest_and_each_compartments_purity():
    went = ["can", "can", "glass", "other", "plastic", "other", "can", "none"]
    truth = ["can", "can", "can", "glass", "glass", "trash", "trash", "food"]
    outcome = sorting_outcomes(went, truth, sorting())
    assert outcome["by_class"]["can"] | {"own": round(2 / 3, 4)} == outcome["by_class"]["can"]
    assert (
        outcome["by_class"]["glass"]["rest"] == 0.5 and outcome["by_class"]["glass"]["wrong_recycling"] == 0.5
    )
    assert outcome["by_class"]["trash"] == {
        "images": 2,
        "recyclable": False,
        "own": 0.0,
        "wrong_recycling": 0.5,
        "rest": 0.5,
        "no_move": 0.0,
    }
    assert (
        outcome["by_class"]["food"]["no_move"] == 1.0
    )  # a kind no config names: rest, and it stayed on the lid
    assert outcome["compartments"] == {
        "can": {"items": 3, "purity": round(2 / 3, 4)},
        "glass": {"items": 1, "purity": 0.0},
        "plastic": {"items": 1, "purity": 0.0},
    }
    assert outcome["recyclables"]["images"] == 5 and outcome["recyclables"]["own"] == 0.4
    assert outcome["rest"]["images"] == 3 and outcome["rest"]["rest"] == round(1 / 3, 4)


def test_a_class_mapped_to_a_compartment_of_its_own_is_recyclable():
    config = parse_config(
        {
            "compartments": {
                "can": {"chute": -60},
                "glass": {"chute": -20},
                "plastic": {"chute": 20},
                "paper": {"chute": 40},
                "other": {"chute": 60},
            },
            "sorting": {"labels": {"can": "can", "glass": "glass", "plastic": "plastic", "paper": "paper"}},
        }
    )
    outcome = sorting_outcomes(["paper", "other"], ["paper", "paper"], config.sorting)
    assert outcome["by_class"]["paper"]["recyclable"] is True and outcome["by_class"]["paper"]["own"] == 0.5


def test_where_a_photo_goes_follows_the_bins_decision():
    s = sorting()
    assert compartment_of(np.array([0.1, 0.7, 0.1, 0.1]), LABELS, s, {"glass": 0.6}) == "glass"
    assert compartment_of(np.array([0.1, 0.7, 0.1, 0.1]), LABELS, s, {"glass": 0.8}) == "other"
    assert compartment_of(np.array([0.1, 0.1, 0.1, 0.7]), LABELS, s, {"trash": 0.0}) == "other"


def test_the_sweep_trades_purity_for_recovery_and_marks_the_point_in_force():
    scores = np.array([[0.0, s, 1 - s, 0.0] for s in (0.95, 0.9, 0.7, 0.6)])
    truth = ["glass", "glass", "plastic", "glass"]
    sweep = threshold_sweep(scores, truth, LABELS, sorting(), {"glass": 0.8, "plastic": 0.5}, steps=11)
    glass = sweep["glass"]
    assert glass["recovery"][0] == 1.0 and glass["purity"][0] == 0.75  # threshold 0: all four
    assert glass["recovery"][-1] == 0.0  # threshold 1: none
    assert glass["in_force"] == [1.0, pytest.approx(2 / 3)]
