from statistics import median

from smartbin.device.home.confidence import RECENT_ITEMS, RecentConfidence


def test_the_median_of_the_last_items_of_the_two_newest_models():
    recent = RecentConfidence()
    for value in (0.9, 0.8, 0.7):
        recent.add("a", value)
    recent.add("a", None)  # an empty chamber: no confidence
    recent.add(None, 0.1)  # no model
    for value in (0.5, 0.6):
        recent.add("b", value)
    assert recent.summary() == {"a": {"items": 3, "median": 0.8}, "b": {"items": 2, "median": 0.55}}

    recent.add("c", 0.4)  # a third model: the oldest one goes
    assert list(recent.summary()) == ["b", "c"]


def test_only_the_last_items_count():
    recent = RecentConfidence()
    values = [i / (2 * RECENT_ITEMS) for i in range(2 * RECENT_ITEMS)]
    for value in values:
        recent.add("a", value)
    assert recent.summary()["a"] == {
        "items": RECENT_ITEMS,
        "median": round(median(values[-RECENT_ITEMS:]), 4),
    }
