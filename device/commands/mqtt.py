"""``smartbin mqtt``: MQTT chores besides publishing (which ``smartbin run`` does).

Only argparse and the standard library at module level; paho-mqtt is imported by the handler.
"""

from __future__ import annotations

import argparse
import re

from .arguments import add_config_option, load_config_of


def _bin_id(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9_-]+", text):
        raise argparse.ArgumentTypeError(f"expected an id of a-z, 0-9, _ and -, got {text!r}")
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``smartbin mqtt ...`` to the ``smartbin`` parser."""
    p = subparsers.add_parser("mqtt", help="MQTT and Home Assistant chores")
    sub = p.add_subparsers(dest="mqtt_command", metavar="ACTION", required=True)
    f = sub.add_parser(
        "forget",
        help="remove the bin from Home Assistant (empty retained discovery config and topics)",
        description="Publish empty retained messages on the bin's discovery config and on its retained "
        "topics (state, photo, availability), so that Home Assistant removes the device and "
        "nothing of it stays on the broker. Stop the daemon first, or set mqtt.discovery = false: "
        "a running daemon announces the device again when it reconnects.",
    )
    add_config_option(f)
    f.add_argument(
        "--bin-id",
        type=_bin_id,
        metavar="ID",
        help="the bin to forget (default: mqtt.bin_id of the config; a simulation publishes as ID-sim)",
    )
    f.set_defaults(func=cmd_mqtt_forget, left_on_interrupt="the device may still be in Home Assistant")


def cmd_mqtt_forget(args: argparse.Namespace) -> int:
    from ..home.mqtt import forget

    config = load_config_of(args)
    cleared = forget(config, bin_id=args.bin_id)
    print(f"removed: {', '.join(cleared)}")
    return 0
