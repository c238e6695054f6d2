"""What the bin publishes over MQTT, and how Home Assistant discovers it.

Topics, all under ``<base_topic>/<bin_id>/``:

- ``availability``: ``online`` / ``offline`` (retained; ``offline`` is also the last will);
- ``event``: one JSON object per item, not retained (Home Assistant's event entity ignores
  retained messages);
- ``state``: retained JSON with counts, the last item, model, uptime, fill levels and faults;
- ``photo``: the last item's JPEG (retained; only with ``photo = true``);
- ``cmd/update`` (the bin subscribes; any payload, not retained): check for an update now
  (only with ``[updates] url``; Home Assistant's update entity sends ``install`` there).

Discovery is one device-based message (Home Assistant 2024.11+) at
``<discovery_prefix>/device/smartbin_<bin_id>/config`` holding the device (``dev``), the origin
(``o``) and every entity (``cmps``), each with a stable ``unique_id`` and ``default_entity_id``.
Nothing here touches the network: :mod:`.mqtt` sends what these functions build.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..config import NO_COMPARTMENT, Config
from ..decision import EMPTY as EMPTY_CHAMBER
from ..decision import LOW_CONFIDENCE, NO_FRAME, UNKNOWN_LABEL, UNMAPPED, capture_fault, full_compartment
from ..records.events import ItemEvent
from .settings import MqttConfig

# event_type values besides the labels that go to a compartment
EMPTY, UNSURE, FAULT = "empty", "unsure", "fault"
ONLINE, OFFLINE = "online", "offline"


def software_version() -> str:
    try:
        return version("smartbin")
    except PackageNotFoundError:  # a checkout that is not installed
        return "unknown"


@dataclass(frozen=True)
class Topics:
    base: str
    availability: str
    event: str
    state: str
    photo: str
    update_command: str  # check for an update now
    discovery: str  # the device's discovery config
    ha_status: str  # where Home Assistant says online (its birth message) and offline

    @classmethod
    def of(cls, mqtt: MqttConfig) -> Topics:
        base = f"{mqtt.base_topic}/{mqtt.bin_id}"
        return cls(
            base=base,
            availability=f"{base}/availability",
            event=f"{base}/event",
            state=f"{base}/state",
            photo=f"{base}/photo",
            update_command=f"{base}/cmd/update",
            discovery=f"{mqtt.discovery_prefix}/device/{device_id(mqtt)}/config",
            ha_status=f"{mqtt.discovery_prefix}/status",
        )


def device_id(mqtt: MqttConfig) -> str:
    return f"smartbin_{mqtt.bin_id}"


def slug(name: str) -> str:
    """``[a-z0-9_]`` for ids; a name that had to change gets a short hash so two never collide."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if cleaned == name:
        return name
    return f"{cleaned or 'x'}_{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def sorted_labels(config: Config) -> dict[str, str]:
    """The labels that go to a compartment of their own (their event_type is the label), each
    with its compartment."""
    return {label: target for label, target in config.sorting.labels.items() if target != NO_COMPARTMENT}


def event_types(config: Config) -> list[str]:
    return list(dict.fromkeys([*sorted_labels(config), EMPTY, UNSURE, FAULT]))


def event_type(event: ItemEvent, labels: Mapping[str, str]) -> str:
    """The label of a sorted item; ``empty`` (a label that moves nothing, e.g. an empty bin),
    ``unsure`` (low confidence, a label the config does not know) or ``fault`` (no frame, a servo
    failure). ``labels`` are :func:`sorted_labels`. An item whose own compartment was full keeps
    its label (the event's ``reason`` says why); one held because the fallback was full is
    ``unsure``, or ``fault`` when nothing could be classified."""
    if event.reason == NO_FRAME or capture_fault(event.reason) or (event.error and "servo:" in event.error):
        return FAULT
    if event.reason in (UNMAPPED, EMPTY_CHAMBER):
        return EMPTY
    if event.label is None:  # nothing classified: no frame or a capture fault, then the fallback full
        return FAULT
    if event.reason in (LOW_CONFIDENCE, UNKNOWN_LABEL) or event.label not in labels:
        return UNSURE
    full = full_compartment(event.reason)
    if full is not None and labels[event.label] != full:  # it was for the fallback: low confidence
        return UNSURE
    return event.label


def event_payload(event: ItemEvent, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "event_type": event_type(event, labels),
        "label": event.label,
        "confidence": event.confidence,
        "compartment": event.compartment,
        "reason": event.reason,
        "latency_ms": event.latency_ms,
        "model_version": event.model_version,
        "ts": event.ts,
        "id": event.id,
        "error": event.error,
    }


def _entity(platform: str, mqtt: MqttConfig, key: str, name: str, **options: Any) -> dict[str, Any]:
    object_id = f"{device_id(mqtt).replace('-', '_')}_{key}"
    return {
        "p": platform,
        "name": name,
        "unique_id": f"{device_id(mqtt)}_{key}",
        "default_entity_id": f"{platform}.{object_id}",
        **options,
    }


def _json_key(name: str) -> str:
    return json.dumps(name)  # a JSON string is a Jinja string literal


def discovery_payload(config: Config) -> dict[str, Any]:
    """The device-based discovery message (see the module docstring)."""
    mqtt = config.mqtt
    topics = Topics.of(mqtt)
    sw = software_version()
    state = topics.state
    cmps: dict[str, dict[str, Any]] = {
        "item": _entity(
            "event",
            mqtt,
            "item",
            "Item",
            state_topic=topics.event,
            event_types=event_types(config),
            icon="mdi:recycle",
        ),
        "last_confidence": _entity(
            "sensor",
            mqtt,
            "last_confidence",
            "Last confidence",
            state_topic=state,
            value_template=(
                "{{ (value_json.last_item.confidence * 100) | round(1) "
                "if value_json.last_item and value_json.last_item.confidence is not none else None }}"
            ),
            unit_of_measurement="%",
            state_class="measurement",
            json_attributes_topic=state,
            json_attributes_template="{{ (value_json.last_item or {}) | tojson }}",
            icon="mdi:gauge",
        ),
        "model_version": _entity(
            "sensor",
            mqtt,
            "model_version",
            "Model version",
            state_topic=state,
            value_template="{{ value_json.model_version }}",
            entity_category="diagnostic",
            icon="mdi:brain",
        ),
        "lid": _entity(
            "binary_sensor",
            mqtt,
            "lid",
            "Lid busy",
            state_topic=state,
            value_template="{{ 'ON' if value_json.busy else 'OFF' }}",
            device_class="running",
        ),
    }
    for compartment in config.compartments:
        key, name = slug(compartment), _json_key(compartment)
        cmps[f"items_{key}"] = _entity(
            "sensor",
            mqtt,
            f"items_{key}",
            f"Items in {compartment}",
            state_topic=state,
            value_template=f"{{{{ value_json.by_compartment[{name}] }}}}",
            state_class="total_increasing",
            icon="mdi:counter",
        )
        if compartment not in config.fill:  # no sensor, no entities that would only say "unknown"
            continue
        cmps[f"fill_{key}"] = _entity(
            "sensor",
            mqtt,
            f"fill_{key}",
            f"Fill {compartment}",
            state_topic=state,
            value_template=f"{{{{ value_json.fill[{name}].percent }}}}",  # null renders None: unknown
            unit_of_measurement="%",
            state_class="measurement",
            icon="mdi:delete-variant",
        )
        cmps[f"full_{key}"] = _entity(
            "binary_sensor",
            mqtt,
            f"full_{key}",
            f"{compartment} full",
            state_topic=state,
            value_template=(
                f"{{{{ 'None' if value_json.fill[{name}].full is none "
                f"else ('ON' if value_json.fill[{name}].full else 'OFF') }}}}"
            ),
            device_class="problem",
        )
    if config.updates.url:
        cmps["update"] = _entity(
            "update",
            mqtt,
            "update",
            "Model update",
            state_topic=state,
            value_template=UPDATE_TEMPLATE,
            command_topic=topics.update_command,
            payload_install=PAYLOAD_INSTALL,
            entity_category="config",
            icon="mdi:brain",
        )
    if mqtt.photo:
        cmps["photo"] = _entity(
            "image", mqtt, "photo", "Last photo", image_topic=topics.photo, content_type="image/jpeg"
        )
    return {
        "dev": {
            "ids": [device_id(mqtt)],
            "name": f"smartbin {mqtt.bin_id}",
            "mf": "smartbin",
            "mdl": "camera recycling bin",
            "sw": sw,
        },
        "o": {"name": "smartbin", "sw": sw},
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": mqtt.qos,
        "cmps": cmps,
    }


PAYLOAD_INSTALL = "install"
UPDATE_TITLE = "smartbin model"
_UPDATE_KEYS = ("installed_version", "latest_version", "title", "release_summary", "in_progress")
# Home Assistant's MQTT update entity reads these keys from a JSON object; the state has more
UPDATE_TEMPLATE = (
    "{{ {" + ", ".join(f"'{key}': value_json.update.{key}" for key in _UPDATE_KEYS) + "} | tojson }}"
)


def update_state(update: Any) -> dict[str, Any] | None:
    """The daemon's ``update`` status with what Home Assistant's update entity reads: the latest
    version is what the channel offers, unless the bin will not try it again (then it is the
    installed one, and the summary says why)."""
    if not isinstance(update, Mapping):
        return None
    installed, offered = update.get("installed_version"), update.get("latest_offered")
    state, reason = update.get("state"), update.get("reason")
    latest = offered if offered and not update.get("not_retried") else installed
    summary = f"{state}: {reason}" if reason else str(state)
    return {
        **update,
        "latest_version": latest,
        "title": UPDATE_TITLE,
        "release_summary": summary[:255],
        "in_progress": state in ("downloading", "installing"),
    }


def fill_levels(config: Config, status_fill: Any) -> dict[str, dict[str, Any]]:
    """``{compartment: {"percent", "full"}}`` for every compartment with a sensor: null while it cannot say."""
    given = status_fill if isinstance(status_fill, dict) else {}
    out = {}
    for compartment in config.fill:
        entry = given.get(compartment) if isinstance(given.get(compartment), dict) else {}
        percent, full = entry.get("percent"), entry.get("full")
        known = percent is not None or bool(full)
        out[compartment] = {"percent": percent, "full": bool(full) if known else None}
    return out
