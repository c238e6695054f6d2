"""Staged rollouts across a fleet: where a channel's rollout stands, and the guard that halts it.

A channel's signed pointer offers one bundle to a share of the bins (``fleet publish --percent``;
each bin's place is :func:`~smartbin.device.updates.tuf_source.rollout_bucket`). Each bin's
retained MQTT state says which channel it follows, which model it runs, whether it refused or
failed a version, and its recent median confidence on its model and the one before
(:mod:`smartbin.device.home.confidence`). From those, :func:`standing` counts the bins the rollout
reached, the ones running the bundle, and the *bad* ones: a bin that failed the bundle's health
check or refused it, or whose median confidence fell by more than ``max_drop`` points on its own
items. :func:`halt_reason` says when more than ``max_bad`` bins are bad; ``smartbin fleet guard``
then halts the channel (:func:`~.fleet_repo.halt`), so no further bin takes the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smartbin.device.updates.tuf_source import rollout_bucket

DEFAULT_MAX_BAD = 1
DEFAULT_MAX_DROP = 10.0  # points of median confidence
DEFAULT_MIN_ITEMS = 20  # items on each model before a bin's drop counts


@dataclass
class Standing:
    channel: str
    version: str
    percent: int
    halted: str | None
    following: list[str] = field(default_factory=list)  # bins that follow the channel
    reached: list[str] = field(default_factory=list)  # of those, the ones the share includes
    running: list[str] = field(default_factory=list)  # bins that run the version
    bad: dict[str, str] = field(default_factory=dict)  # bin -> why it counts against the rollout

    def line(self) -> str:
        share = f"{self.percent}% of bins" if not self.halted else "halted"
        text = (
            f"{self.channel}: {self.version} to {share}: {len(self.running)} of {len(self.reached)} "
            f"reached bins run it ({len(self.following)} follow the channel), {len(self.bad)} bad"
        )
        if self.bad:
            text += " (" + "; ".join(f"{bin_id}: {why}" for bin_id, why in sorted(self.bad.items())) + ")"
        if self.halted:
            text += f"; halted: {self.halted}"
        return text


def standing(
    channel: str,
    pointer: dict[str, Any],
    states: dict[str, dict[str, Any]],
    *,
    max_drop: float = DEFAULT_MAX_DROP,
    min_items: int = DEFAULT_MIN_ITEMS,
) -> Standing:
    """Where ``channel``'s rollout of ``pointer`` stands among the bins of ``states``."""
    version = pointer["version"]
    share = pointer.get("was_percent", pointer["percent"]) if pointer.get("halted") else pointer["percent"]
    out = Standing(channel, version, pointer["percent"], pointer.get("halted"))
    for bin_id in sorted(states):
        state = states[bin_id]
        update = state.get("update") if isinstance(state.get("update"), dict) else {}
        if update.get("channel") != channel:
            continue
        out.following.append(bin_id)
        if rollout_bucket(bin_id, channel) < share or state.get("model_version") == version:
            out.reached.append(bin_id)
        if state.get("model_version") == version:
            out.running.append(bin_id)
        why = _bad(state, update, version, max_drop, min_items)
        if why:
            out.bad[bin_id] = why
    return out


def _bad(
    state: dict[str, Any], update: dict[str, Any], version: str, max_drop: float, min_items: int
) -> str | None:
    skipped = update.get("not_retried")
    if isinstance(skipped, dict) and skipped.get("version") == version:
        return f"{skipped.get('outcome', 'failed')}: {skipped.get('reason', '?')}"
    if state.get("model_version") != version:
        return None
    confidence = state.get("confidence") if isinstance(state.get("confidence"), dict) else {}
    after = confidence.get(version)
    before = [v for k, v in confidence.items() if k != version and isinstance(v, dict)]
    if not isinstance(after, dict) or len(before) != 1:
        return None
    try:
        counted = min(int(after["items"]), int(before[0]["items"])) >= min_items
        drop = 100 * (float(before[0]["median"]) - float(after["median"]))
    except (KeyError, TypeError, ValueError):
        return None
    if counted and drop > max_drop:
        return (
            f"median confidence fell {drop:.1f} points ({before[0]['median']:.2f} -> {after['median']:.2f})"
        )
    return None


def halt_reason(rollout: Standing, max_bad: int = DEFAULT_MAX_BAD) -> str | None:
    """Why the rollout must stop (more than ``max_bad`` bad bins), else None."""
    if rollout.halted or len(rollout.bad) <= max_bad:
        return None
    return f"{len(rollout.bad)} bins bad on {rollout.version} (more than {max_bad}): " + ", ".join(
        sorted(rollout.bad)
    )
