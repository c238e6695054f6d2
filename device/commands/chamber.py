"""``smartbin calibrate``: take the empty reference (see :mod:`..vision.chamber`).

Only argparse and the standard library at module level, like :mod:`.bin`.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from .arguments import given_path, positive_int

MIN_FRAMES = 3  # a median of fewer says little


def frame_count(text: str) -> int:
    """``--frames``: a whole number of :data:`MIN_FRAMES` or more."""
    value = positive_int(text)
    if value < MIN_FRAMES:
        raise argparse.ArgumentTypeError(
            f"must be {MIN_FRAMES} or more (a median of fewer says little), got {value}"
        )
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="store what the empty chamber looks like (lid closed, chamber empty)",
        description=(
            "With the lid closed and the chamber empty, capture a few frames from the configured camera "
            "and store their median as the empty reference in the state directory. Refuses frames that are "
            "too dark, blown out or unsteady. Stop the daemon first: it owns the camera, and reads the "
            "reference when it starts. A folder camera gives the next photos of its source."
        ),
    )
    p.add_argument(
        "--config",
        type=given_path,
        metavar="FILE",
        help="config file (default: $SMARTBIN_CONFIG, else /etc/smartbin/config.toml if it exists, else built-in defaults)",
    )
    p.add_argument(
        "--frames", type=frame_count, default=5, metavar="N", help="frames to take (3 or more, default 5)"
    )
    p.set_defaults(func=cmd_calibrate, left_on_interrupt="the empty reference was not changed")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..config import default_config_path, load_config
    from ..errors import SmartbinError, os_error_message, os_error_reason
    from ..records.lock import StateDirLock
    from ..vision.chamber import frame_stats, save_reference

    config = load_config(args.config if args.config is not None else default_config_path())
    state_dir = config.paths.state_dir
    lock = StateDirLock(state_dir)
    try:
        lock.acquire()
    except SmartbinError:
        holder = _lock_holder(lock.path)
        raise SmartbinError(
            f"a smartbin daemon ({holder}) runs on {state_dir} and owns the camera; stop it "
            "(e.g. 'sudo systemctl stop smartbin'), calibrate, then start it again: it reads the reference when it starts"
        ) from None
    except OSError as exc:
        raise SmartbinError(
            f"cannot write the state directory {state_dir} ({os_error_message(exc)})"
        ) from None
    try:
        frames = _take_frames(config, args.frames)
        path = save_reference(state_dir, frames, config.camera, config.empty)
    except OSError as exc:
        raise SmartbinError(
            f"cannot store the empty reference in {state_dir}: {os_error_reason(exc)}"
        ) from None
    finally:
        lock.release()
    stats = frame_stats(frames[0])
    height, width = frames[0].shape[:2]
    print(
        f"empty reference stored: {path} ({len(frames)} frames {width}x{height} from {config.camera.kind}, "
        f"mean brightness {stats['mean']:.0f}/255)"
    )
    return 0


def _take_frames(config: Any, count: int) -> list[Any]:
    """``count`` frames of the configured camera, the chamber's light on while they are taken."""
    from ..hardware.cameras import create_camera
    from ..hardware.pins import make_pin_factory
    from ..vision.chamber import take_frames

    camera = create_camera(
        config.camera.kind,
        width=config.camera.width,
        height=config.camera.height,
        source=config.camera.source,
        controls=config.camera.controls or None,
    )
    with contextlib.ExitStack() as stack:
        if config.light.pin is not None:
            from gpiozero import DigitalOutputDevice

            factory = make_pin_factory(config.gpio.pin_factory)
            stack.callback(factory.close)
            light = DigitalOutputDevice(
                config.light.pin, active_high=config.light.active_high, pin_factory=factory
            )
            stack.callback(light.close)
            light.on()
        stack.enter_context(camera)
        return take_frames(camera.capture, count, live=camera.live, settle_s=config.lid.settle_s)


def _lock_holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(path.read_text().strip())}"
    return "pid unknown"
