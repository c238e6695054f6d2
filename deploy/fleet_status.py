"""``smartbin fleet status``: every bin under ``[mqtt] base_topic``, from the retained messages on the broker.

Each bin's daemon keeps a retained ``state`` and ``availability`` on the broker
(:mod:`smartbin.device.home.mqtt`); this reads them all through one wildcard subscription, for a
bounded time, and says which bins stopped reporting: offline, or a state older than ``stale_s``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from smartbin.device.config import Config
from smartbin.device.errors import SmartbinError
from smartbin.device.home.mqtt import broker_of, broker_url, connect

UPDATE_KEYS = ("channel", "state", "reason", "installed_version", "latest_offered")
QUIET_S = 0.5  # the broker sends retained messages at once after subscribing: this long without one ends it
CONNECT_TIMEOUT_S = 10.0


@dataclass
class BinRow:
    """One bin as its retained messages describe it (the keys of ``--json``)."""

    bin_id: str
    availability: str | None  # "online", "offline", or None when never published
    model_version: str | None
    state: str | None  # the daemon's own state ("running", ...)
    items: int | None  # since the daemon started
    last_item: dict[str, Any] | None  # ts, label, compartment
    faults: dict[str, Any] | None  # items_with_errors, warnings
    fill: dict[str, Any] | None  # compartment: {percent, full}
    update: dict[str, Any] | None  # channel, state, reason, installed and offered versions
    last_seen: str | None  # when the state was published (started + uptime_s), None if unknown
    age_s: float | None
    stale: str | None  # why the bin stopped reporting, None while it reports


def collect(config: Config, *, wait_s: float) -> dict[str, dict[str, bytes]]:
    """``{bin_id: {"state": payload, "availability": payload}}`` of the retained messages on the
    broker, read for at most ``wait_s`` (less once they stop coming)."""
    mqtt = broker_of(config)
    client = connect(mqtt, f"smartbin-fleet-{os.getpid()}", timeout=CONNECT_TIMEOUT_S)
    found: dict[str, dict[str, bytes]] = {}
    heard = threading.Condition()
    subscribed = threading.Event()
    last = [time.monotonic()]

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        _, bin_id, kind = message.topic.rsplit("/", 2)
        with heard:
            if message.payload:  # an empty retained message: the bin was forgotten
                found.setdefault(bin_id, {})[kind] = message.payload
            last[0] = time.monotonic()

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    base = mqtt.base_topic
    try:
        client.subscribe([(f"{base}/+/state", 1), (f"{base}/+/availability", 1)])
        deadline = time.monotonic() + wait_s
        subscribed.wait(wait_s)
        with heard:
            last[0] = max(last[0], time.monotonic())
            while (now := time.monotonic()) < deadline and now - last[0] < QUIET_S:
                heard.wait(min(deadline, last[0] + QUIET_S) - now)
            return {bin_id: dict(kinds) for bin_id, kinds in found.items()}
    finally:
        client.disconnect()
        client.loop_stop()


def bin_states(found: dict[str, dict[str, bytes]]) -> dict[str, dict[str, Any]]:
    """Each bin's retained state as a dict (an unreadable one: empty)."""
    states = {}
    for bin_id, kinds in found.items():
        try:
            state = json.loads(kinds.get("state", b"{}"))
        except ValueError:
            state = {}
        states[bin_id] = state if isinstance(state, dict) else {}
    return states


def rows(found: dict[str, dict[str, bytes]], *, stale_s: float, now: datetime) -> list[BinRow]:
    """One row per bin, sorted by id, each with why it is stale (if it is)."""
    states = bin_states(found)
    out = []
    for bin_id in sorted(found):
        availability = found[bin_id].get("availability", b"").decode("utf-8", "replace") or None
        state = states[bin_id]
        seen = _published(state)
        age = round((now - seen).total_seconds(), 1) if seen else None
        last_item = state.get("last_item") if isinstance(state.get("last_item"), dict) else None
        if availability != "online":
            stale = availability or "no availability"
        elif age is None:
            stale = "no state time"
        elif age > stale_s:
            stale = f"state {_duration(age)} old"
        else:
            stale = None
        out.append(
            BinRow(
                bin_id=bin_id,
                availability=availability,
                model_version=state.get("model_version"),
                state=state.get("state"),
                items=state.get("items"),
                last_item={k: last_item.get(k) for k in ("ts", "label", "compartment")}
                if last_item
                else None,
                faults=state.get("faults"),
                fill=state.get("fill"),
                update={k: update.get(k) for k in UPDATE_KEYS}
                if isinstance(update := state.get("update"), dict)
                else None,
                last_seen=seen.isoformat(timespec="seconds") if seen else None,
                age_s=age,
                stale=stale,
            )
        )
    return out


def _published(state: dict[str, Any]) -> datetime | None:
    """When the daemon published ``state``: it started at ``started`` and had run ``uptime_s``."""
    try:
        started = datetime.fromisoformat(state["started"])
        return started.astimezone(UTC) + timedelta(seconds=float(state["uptime_s"]))
    except (KeyError, TypeError, ValueError):
        return None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def table(bins: list[BinRow]) -> list[str]:
    """The rows as aligned text lines, with a header."""
    header = (
        "BIN",
        "LINK",
        "MODEL",
        "STATE",
        "ITEMS",
        "LAST ITEM",
        "FAULTS",
        "FILL",
        "UPDATE",
        "LAST SEEN",
        "",
    )
    lines = [header] + [_cells(b) for b in bins]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]


def _cells(b: BinRow) -> tuple[str, ...]:
    item = b.last_item or {}
    last_item = (
        f"{_short(item.get('ts'))} {item.get('label') or '?'} -> {item.get('compartment') or 'none'}"
        if item
        else "-"
    )
    faults = b.faults or {}
    fault_text = (
        [f"items with errors: {faults['items_with_errors']}"] if faults.get("items_with_errors") else []
    )
    fault_text += [str(w) for w in faults.get("warnings") or []]
    fill = ", ".join(_fill(name, level) for name, level in (b.fill or {}).items() if isinstance(level, dict))
    seen = (
        f"{_short(b.last_seen)} ({_duration(b.age_s)} ago)"
        if b.last_seen and b.age_s is not None
        else "unknown"
    )
    return (
        b.bin_id,
        b.availability or "?",
        str(b.model_version or "-"),
        str(b.state or "-"),
        "-" if b.items is None else str(b.items),
        last_item,
        "; ".join(fault_text) or "none",
        fill or "-",
        _update(b.update),
        seen,
        f"STALE: {b.stale}" if b.stale else "",
    )


def _update(update: dict[str, Any] | None) -> str:
    if not update:
        return "-"
    text = f"{update.get('channel')}: {update.get('state')}"
    return f"{text} ({update['reason']})" if update.get("reason") else text


def _short(ts: Any) -> str:
    """An ISO time to the minute, as ``2026-12-01 10:00`` (the zone the bin wrote it in)."""
    return str(ts)[:16].replace("T", " ") if ts else "?"


def _fill(name: str, level: dict[str, Any]) -> str:
    percent = level.get("percent")
    return f"{name} {'?' if percent is None else f'{percent:g}%'}{' FULL' if level.get('full') else ''}"


def fleet_status(
    config: Config, *, wait_s: float, stale_s: float, as_json: bool, repo: Path | None = None
) -> tuple[list[str], int]:
    """The lines to print and the exit code: 0 when every bin reports, 1 when one does not. With
    ``repo`` (the fleet's TUF repository) each channel's rollout too."""
    found = collect(config, wait_s=wait_s)
    if not found:
        raise SmartbinError(f"no bins found under {config.mqtt.base_topic}/+ on {broker_url(config.mqtt)}")
    bins = rows(found, stale_s=stale_s, now=datetime.now(UTC))
    stale = [b for b in bins if b.stale]
    rollouts = []
    if repo is not None:
        from .fleet_repo import channels  # python-tuf: only with --repo
        from .rollout import standing

        states = bin_states(found)
        rollouts = [standing(name, pointer, states) for name, pointer in sorted(channels(repo).items())]
    code = 1 if stale else 0
    if as_json:
        report = {"bins": [asdict(b) for b in bins], "rollouts": [asdict(r) for r in rollouts]}
        return [json.dumps(report, indent=2)], code
    lines = table(bins)
    lines.append(
        f"{len(stale)} of {len(bins)} bins stopped reporting: {', '.join(b.bin_id for b in stale)}"
        if stale
        else f"all {len(bins)} bins report"
    )
    lines += [f"rollout {r.line()}" for r in rollouts]
    return lines, code
