"""What ends up in each compartment: sorting outcomes, and the thresholds that give the best ones.

Accuracy says how often the top label is right; a bin's owner cares where items land. Here every
photo goes through the bin's own :func:`~smartbin.device.decision.decide` (its label's threshold,
the config's label map, the fallback), and the report says, for each true class, what share went
into its own compartment, into a wrong recycling compartment, or into the rest (fallback), and how
pure each recycling compartment is.

A true class is *recyclable* when the config maps it to a compartment other than the fallback;
every other class (``trash``, or a kind the model does not know at all) is *rest*: it belongs in
the fallback compartment. Numpy only, so ``smartbin evaluate`` runs on a bin too.

Thresholds are chosen for the outcome itself (:func:`choose_for_outcome`): as many recyclables as
possible into their own compartment while at most a given share goes into a wrong one and at least
a given share of the rest is kept out. Choosing each label's threshold for a purity of its own
(:func:`choose_thresholds`, ``convert --purity``) is the older rule: on the default model's
validation photos it sent glass to the rest below 0.91 for its compartment's sake and lost a
quarter of the recyclables, where the outcome rule keeps glass's threshold low and raises the
labels that bring in wrong items (docs/conversion.md has the figures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smartbin.device.config import NO_COMPARTMENT, SortingConfig
from smartbin.device.decision import decide
from smartbin.device.errors import SmartbinError
from smartbin.device.vision.classifier import Prediction

from . import DEFAULT_MAX_WRONG, DEFAULT_MIN_KEPT_OUT, DEFAULT_PURITY

OWN, WRONG, REST, NO_MOVE = "own", "wrong_recycling", "rest", "no_move"
#: The thresholds :func:`choose_for_outcome` tries for each label.
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(21))


@dataclass(frozen=True)
class SortingTarget:
    """What a bundle's thresholds are chosen for on the validation photos: the outcome
    (``max_wrong``, ``min_kept_out``, shares 0-1), or with ``purity`` each label on its own."""

    max_wrong: float = DEFAULT_MAX_WRONG
    min_kept_out: float = DEFAULT_MIN_KEPT_OUT
    purity: float | None = None

    def check(self) -> None:
        """One-line :class:`SmartbinError` for a share out of range (NaN included)."""
        if not 0 <= self.max_wrong <= 0.5:
            raise SmartbinError(f"--max-wrong must be 0 to 50 (percent), got {100 * self.max_wrong:g}")
        if not 0.5 <= self.min_kept_out <= 1:
            raise SmartbinError(
                f"--min-kept-out must be 50 to 100 (percent), got {100 * self.min_kept_out:g}"
            )
        if self.purity is not None and not 0.5 <= self.purity <= 1:
            raise SmartbinError(f"--purity must be 50 to 100 (percent), got {100 * self.purity:g}")

    def describe(self) -> str:
        if self.purity is not None:
            return f"{100 * self.purity:g}% purity per label"
        return f"at most {100 * self.max_wrong:g}% wrong, at least {100 * self.min_kept_out:g}% of the rest kept out"

    def choose(
        self, scores: np.ndarray, true_classes: Sequence[str], labels: Sequence[str], sorting: SortingConfig
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """The thresholds, and the figures they were chosen on (for the manifest)."""
        if self.purity is None:
            thresholds, outcome = choose_for_outcome(
                scores, true_classes, labels, sorting, self.max_wrong, self.min_kept_out
            )
            return thresholds, outcome
        truth = np.array([labels.index(c) if c in labels else -1 for c in true_classes])
        figures = choose_thresholds(scores, truth, labels, self.purity)
        return {label: f["threshold"] for label, f in figures.items()}, figures


#: The default: the outcome targets of converters/__init__.py.
DEFAULT_TARGET = SortingTarget()


def choose_for_outcome(
    scores: np.ndarray,
    true_classes: Sequence[str],
    labels: Sequence[str],
    sorting: SortingConfig,
    max_wrong: float = DEFAULT_MAX_WRONG,
    min_kept_out: float = DEFAULT_MIN_KEPT_OUT,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Thresholds for the labels the config sorts into a recycling compartment that send the most
    recyclables into their own compartment while at most ``max_wrong`` of them go into a wrong one
    and at least ``min_kept_out`` of the rest stays out of the recycling; and the outcome they give.

    ``scores`` is (photos, labels), ``true_classes`` what each photo is. A photo's fate depends on
    its top label's threshold alone, so each label's effect at each :data:`THRESHOLD_GRID` value is
    counted once (own, wrong, rest let in), and a knapsack over the labels, with the wrong and
    let-in counts as its two budgets, finds the best combination exactly (searching one label at a
    time gets stuck: the first label spends the whole budget). A tie keeps the higher thresholds.
    Labels sent to the fallback or to ``"none"`` get no threshold: theirs changes nothing here; nor
    does a label no photo has as its top one (the bin's default applies).
    """
    fallback = sorting.fallback
    homes = np.array([_home(c, sorting) for c in true_classes])
    recyclable = homes != fallback
    top = scores.argmax(axis=1)
    confidence = scores.max(axis=1)
    budget = (
        int(np.floor(max_wrong * recyclable.sum() + 1e-9)),
        int(np.floor((1 - min_kept_out) * (~recyclable).sum() + 1e-9)),
    )
    # (wrong, let in) -> (own, thresholds so far)
    states: dict[tuple[int, int], tuple[int, dict[str, float]]] = {(0, 0): (0, {})}
    for index, label in enumerate(labels):
        target = sorting.labels.get(label)
        if target in (None, NO_COMPARTMENT, fallback):
            continue
        mine = top == index
        if not mine.any():  # no photo to choose by: the bin's default applies
            continue
        grown: dict[tuple[int, int], tuple[int, dict[str, float]]] = {}
        for value in sorted(THRESHOLD_GRID, reverse=True):
            sent = mine & (confidence >= value)
            own = int(np.sum(sent & (homes == target)))
            step = (int(np.sum(sent & recyclable & (homes != target))), int(np.sum(sent & ~recyclable)))
            for (wrong, let_in), (so_far, chosen) in states.items():
                key = (wrong + step[0], let_in + step[1])
                if key[0] <= budget[0] and key[1] <= budget[1] and own + so_far > grown.get(key, (-1,))[0]:
                    grown[key] = (own + so_far, chosen | {label: value})
        states = grown
    _, thresholds = max(states.values(), key=lambda state: (state[0], sum(state[1].values())))
    went = [compartment_of(row, labels, sorting, thresholds) for row in scores]
    return thresholds, sorting_outcomes(went, true_classes, sorting)


def choose_thresholds(
    scores: np.ndarray, truth: np.ndarray, labels: Sequence[str], purity: float = DEFAULT_PURITY
) -> dict[str, dict[str, Any]]:
    """For each label, the lowest confidence at which the photos taken for it are ``purity`` pure.

    ``scores`` is (photos, labels), ``truth`` each photo's label index (-1 for a kind the model
    does not have). A photo counts for a label when that label is its top score and the score is
    at or above the threshold. The threshold lies halfway between the lowest score kept and the
    highest left out (not on a photo's own score, which a new photo would as likely fall just
    below), or at the lowest score when none is left out. Where no threshold reaches ``purity``,
    the purest one is taken (``met`` false); a label that no photo was taken for gets none.
    """
    top = scores.argmax(axis=1)
    confidence = scores.max(axis=1)
    chosen: dict[str, dict[str, Any]] = {}
    for index, label in enumerate(labels):
        mine = top == index
        if not mine.any():
            continue
        order = np.argsort(-confidence[mine], kind="stable")
        ranked = confidence[mine][order]
        right = np.cumsum(truth[mine][order] == index)
        purities = right / np.arange(1, len(ranked) + 1)
        # a threshold at a photo's score takes every photo scoring as high: the last of equal scores
        last_of_tie = np.append(ranked[1:] != ranked[:-1], True)
        meets = np.flatnonzero(last_of_tie & (purities >= purity - 1e-12))
        met = len(meets) > 0
        at = int(meets[-1]) if met else int(np.flatnonzero(last_of_tie)[np.argmax(purities[last_of_tie])])
        support = int(np.sum(truth == index))
        threshold = (ranked[at] + ranked[at + 1]) / 2 if at + 1 < len(ranked) else ranked[at]
        chosen[label] = {
            "threshold": float(threshold),
            "purity": round(float(purities[at]), 4),
            "recovery": round(float(right[at] / support), 4) if support else None,
            "sorted": at + 1,
            "support": support,
            "met": met,
        }
    return chosen


def compartment_of(
    probabilities: np.ndarray, labels: Sequence[str], sorting: SortingConfig, thresholds: Mapping[str, float]
) -> str:
    """Where the bin sends a photo with these scores (``"none"``: the servos do not move)."""
    best = int(np.argmax(probabilities))
    scores = dict(zip(labels, map(float, probabilities), strict=True))
    decision = decide(Prediction(labels[best], float(probabilities[best]), scores), sorting, thresholds)
    return decision.compartment or NO_COMPARTMENT


def sorting_outcomes(
    compartments: Sequence[str], true_classes: Sequence[str], sorting: SortingConfig
) -> dict[str, Any]:
    """Shares per true class (own / wrong recycling / rest / no move) and each compartment's purity.

    ``compartments`` is where each photo went (:func:`compartment_of`), ``true_classes`` what it is.
    """
    fallback = sorting.fallback
    home = {c: _home(c, sorting) for c in dict.fromkeys(true_classes)}
    by_class: dict[str, dict[str, Any]] = {}
    for cls in home:
        went = [where for where, truth in zip(compartments, true_classes, strict=True) if truth == cls]
        kinds = [_kind(where, home[cls], fallback) for where in went]
        by_class[cls] = {
            "images": len(went),
            "recyclable": home[cls] != fallback,
            **{kind: round(kinds.count(kind) / len(went), 4) for kind in (OWN, WRONG, REST, NO_MOVE)},
        }
    purity = {}
    for compartment in dict.fromkeys(c for c in compartments if c not in (fallback, NO_COMPARTMENT)):
        landed = [
            truth for where, truth in zip(compartments, true_classes, strict=True) if where == compartment
        ]
        belongs = sum(home[truth] == compartment for truth in landed)
        purity[compartment] = {"items": len(landed), "purity": round(belongs / len(landed), 4)}
    recyclable = [(w, t) for w, t in zip(compartments, true_classes, strict=True) if home[t] != fallback]
    rest = [w for w, t in zip(compartments, true_classes, strict=True) if home[t] == fallback]
    return {
        "fallback": fallback,
        "by_class": by_class,
        "compartments": purity,
        "recyclables": {
            "images": len(recyclable),
            **_shares([_kind(w, home[t], fallback) for w, t in recyclable]),
        },
        "rest": {"images": len(rest), **_shares([_kind(w, fallback, fallback) for w in rest])},
    }


def _home(true_class: str, sorting: SortingConfig) -> str:
    """The compartment a true class belongs in: its mapped one, else the fallback."""
    target = sorting.labels.get(true_class)
    return target if target is not None and target != NO_COMPARTMENT else sorting.fallback


def _kind(where: str, home: str, fallback: str) -> str:
    if where == NO_COMPARTMENT:
        return NO_MOVE
    if where == home:
        return OWN if home != fallback else REST
    return REST if where == fallback else WRONG


def _shares(kinds: list[str]) -> dict[str, float]:
    return {
        kind: round(kinds.count(kind) / len(kinds), 4) if kinds else 0.0
        for kind in (OWN, WRONG, REST, NO_MOVE)
    }


def format_outcomes(outcomes: dict[str, Any]) -> str:
    """The outcome table: a row per true class, then the purity of each recycling compartment."""
    fallback = outcomes["fallback"]
    lines = [
        f"{'true class':<16} {'photos':>6} {'own':>6} {'wrong recycling':>15} {'rest (' + fallback + ')':>14} {'no move':>8}"
    ]
    for cls, row in outcomes["by_class"].items():
        own = f"{100 * row[OWN]:5.1f}%" if row["recyclable"] else "     -"
        lines.append(
            f"{cls:<16} {row['images']:>6} {own:>6} {100 * row[WRONG]:>14.1f}% {100 * row[REST]:>13.1f}% {100 * row[NO_MOVE]:>7.1f}%"
        )
    row = outcomes["recyclables"]
    if row["images"]:
        lines.append(
            f"recyclables: {row['images']} photos, {100 * row[OWN]:.1f}% into their own compartment, "
            f"{100 * row[WRONG]:.1f}% into a wrong recycling compartment, {100 * row[REST]:.1f}% into {fallback}"
        )
    row = outcomes["rest"]
    if row["images"]:
        lines.append(
            f"non-recyclables: {row['images']} photos, {100 * (row[REST] + row[NO_MOVE]):.1f}% kept out of "
            f"the recycling, {100 * row[WRONG]:.1f}% into a recycling compartment"
        )
    purity = ", ".join(
        f"{c} {100 * p['purity']:.1f}% ({p['items']} items)" for c, p in outcomes["compartments"].items()
    )
    lines.append(f"purity: {purity or 'nothing went into a recycling compartment'}")
    return "\n".join(lines)


def threshold_sweep(
    scores: np.ndarray,
    true_classes: Sequence[str],
    labels: Sequence[str],
    sorting: SortingConfig,
    thresholds: Mapping[str, float],
    steps: int = 41,
) -> dict[str, dict[str, list[float]]]:
    """Purity against recovery of each recycling compartment as its labels' threshold runs 0..1
    (the other labels keep ``thresholds``); also the point in force."""
    sweep = {}
    homes = [_home(t, sorting) for t in true_classes]
    for compartment in dict.fromkeys(sorting.labels.values()):
        if compartment in (sorting.fallback, NO_COMPARTMENT) or compartment not in homes:
            continue
        own_labels = [label for label in labels if sorting.labels.get(label) == compartment]
        curve: dict[str, list[float]] = {"threshold": [], "purity": [], "recovery": []}
        for t in [*np.linspace(0.0, 1.0, steps), None]:
            moved = dict(thresholds) | ({label: float(t) for label in own_labels} if t is not None else {})
            went = [compartment_of(row, labels, sorting, moved) for row in scores]
            landed = [h for w, h in zip(went, homes, strict=True) if w == compartment]
            recovered = sum(w == h == compartment for w, h in zip(went, homes, strict=True))
            point = (
                sum(h == compartment for h in landed) / len(landed) if landed else 1.0,
                recovered / homes.count(compartment),
            )
            if t is None:
                sweep[compartment] = curve | {"in_force": list(point)}
            else:
                curve["threshold"].append(round(float(t), 3))
                curve["purity"].append(point[0])
                curve["recovery"].append(point[1])
    return sweep


def plot_sweep(sweep: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """Purity (y) against recovery (x) per compartment, the thresholds in force marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    try:
        for compartment, curve in sweep.items():
            (line,) = ax.plot(curve["recovery"], curve["purity"], marker=".", label=compartment)
            ax.plot(
                *reversed(curve["in_force"]),
                marker="o",
                markersize=10,
                color=line.get_color(),
                fillstyle="none",
            )
        ax.set_xlabel("recovery: share of its own items the compartment gets")
        ax.set_ylabel("purity: share of what lands there that belongs")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(title="circle: in force")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path
