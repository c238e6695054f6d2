"""The bin's configuration: one TOML file, validated before anything touches hardware.

Every key has a default, and the defaults run the hardware-free simulation (mock pins, the
folder camera on the bundled sample photos, the bundled default model). A key the schema does
not know, or a value of the wrong kind, is rejected with its key path, for example::

    config.toml: servos.chute.pin: expected an integer GPIO pin 0-27, got 'x'

docs/device.md lists every key; ``smartbin config example`` prints a commented file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

PIN_FACTORIES = ("mock", "lgpio", "rpigpio", "pigpio", "native")
CAMERA_KINDS = ("picamera2", "opencv", "folder")
LID_EDGES = ("pressed", "released")
NO_COMPARTMENT = "none"  # a label mapped to this does not move the servos
SYSTEM_CONFIG = Path("/etc/smartbin/config.toml")
DATA_DIR = Path(__file__).resolve().parent / "data"
EXAMPLE_CONFIG = DATA_DIR / "config.example.toml"
SERVO_FRAME_MS = 20.0  # gpiozero's default servo frame width (50 Hz)


@dataclass(frozen=True)
class GpioConfig:
    pin_factory: str = "mock"


@dataclass(frozen=True)
class LidConfig:
    pin: int = 17
    pull_up: bool = True
    closed_when: str = "pressed"  # the Button edge that means "lid closed"
    bounce_ms: int = 50
    settle_s: float = 0.3


@dataclass(frozen=True)
class CameraConfig:
    kind: str = "folder"
    source: str | int | None = None
    width: int = 640
    height: int = 480
    retries: int = 2
    controls: Mapping[str, Any] = field(default_factory=dict)  # libcamera controls (picamera2 only)


@dataclass(frozen=True)
class ClassifierConfig:
    model: Path | None = None
    threads: int = 2
    frames: int = 1


@dataclass(frozen=True)
class ServoConfig:
    name: str
    pin: int
    min_pulse_ms: float = 0.5
    max_pulse_ms: float = 2.5
    min_angle: float = -90.0
    max_angle: float = 90.0
    home: float = 0.0


@dataclass(frozen=True)
class SortingConfig:
    threshold: float = 0.6
    fallback: str = "other"
    travel_s: float = 0.4
    hold_s: float = 0.8
    detach_when_idle: bool = True
    labels: Mapping[str, str] = field(
        default_factory=lambda: {
            "can": "can",
            "glass": "glass",
            "plastic": "plastic",
            "empty": NO_COMPARTMENT,
        }
    )


@dataclass(frozen=True)
class PathsConfig:
    state_dir: Path
    models_dir: Path
    events_db: Path
    images_dir: Path


@dataclass(frozen=True)
class ImagesConfig:
    save: bool = False
    max_count: int = 500
    max_mb: float = 100.0


def _default_servos() -> tuple[ServoConfig, ...]:
    return (ServoConfig("chute", pin=12), ServoConfig("flap", pin=13))


def _default_compartments() -> dict[str, dict[str, float]]:
    # A chute turns to one of four compartments, then a flap drops the item into it.
    return {
        "can": {"chute": -60.0, "flap": 60.0},
        "glass": {"chute": -20.0, "flap": 60.0},
        "plastic": {"chute": 20.0, "flap": 60.0},
        "other": {"chute": 60.0, "flap": 60.0},
    }


@dataclass(frozen=True)
class Config:
    paths: PathsConfig
    gpio: GpioConfig = field(default_factory=GpioConfig)
    lid: LidConfig = field(default_factory=LidConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    sorting: SortingConfig = field(default_factory=SortingConfig)
    servos: tuple[ServoConfig, ...] = field(default_factory=_default_servos)
    compartments: Mapping[str, Mapping[str, float]] = field(default_factory=_default_compartments)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    source: Path | None = None  # the file it came from; None for the built-in defaults

    def servo(self, name: str) -> ServoConfig:
        return next(s for s in self.servos if s.name == name)


def default_state_dir() -> Path:
    """systemd's ``StateDirectory=`` when set, else the XDG state directory of the user."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "smartbin"


def default_config_path() -> Path | None:
    """The file ``smartbin run/status/events`` read without ``--config``.

    ``$SMARTBIN_CONFIG``, else /etc/smartbin/config.toml when it exists, else None (the
    built-in defaults).
    """
    env = os.environ.get("SMARTBIN_CONFIG")
    if env:
        return Path(env)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


# --- validation -------------------------------------------------------------------------


class _Table:
    """One TOML table being read: typed look-ups with defaults, then a check for unknown keys."""

    def __init__(self, data: Any, path: str, where: str) -> None:
        self.path, self.where = path, where
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.error(path, "expected a table", data)
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def error(self, key_path: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.where}: {key_path}: {expected}, got {value!r}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, check: Callable[[Any], Any], expected: str, default: Any) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        try:
            return check(value)
        except (TypeError, ValueError):
            raise self.error(self.key(name), f"expected {expected}", value) from None

    def table(self, name: str) -> _Table:
        self.used.add(name)
        return _Table(self.data.get(name), self.key(name), self.where)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used)) or "none"
            raise ConfigError(f"{self.where}: {self.key(unknown[0])}: unknown key (known here: {known})")


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError
        return value

    return check


def _float(lo: float, hi: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise ValueError
        return float(value)

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError
        return value

    return check


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    return value


def _optional_path(base: Path) -> Callable[[Any], Path | None]:
    def check(value: Any) -> Path | None:
        if not isinstance(value, str):
            raise ValueError
        if not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path

    return check


def _camera_source(value: Any) -> str | int | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError
    return None if value == "" else value


_PIN = "an integer GPIO pin 0-27"


def _control_value(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return tuple(value)
    raise ValueError


def _read_controls(table: _Table) -> dict[str, Any]:
    """libcamera controls by name, e.g. AfMode = 0, LensPosition = 4.0 (picamera2 checks the names)."""
    controls = {
        name: table.get(name, _control_value, "a number, true/false or a list of numbers", None)
        for name in list(table.data)
    }
    table.done()
    return controls


def _read_servos(table: _Table) -> tuple[ServoConfig, ...]:
    if not table.data:
        raise table.error(table.path, "expected at least one servo table such as [servos.chute]", {})
    servos = []
    for name in list(table.data):
        t = table.table(name)
        d = ServoConfig(name, pin=0)
        servo = ServoConfig(
            name=name,
            pin=t.get("pin", _int(0, 27), _PIN, None),
            min_pulse_ms=t.get("min_pulse_ms", _float(0.1, 5.0), "a pulse width in ms 0.1-5", d.min_pulse_ms),
            max_pulse_ms=t.get("max_pulse_ms", _float(0.1, 5.0), "a pulse width in ms 0.1-5", d.max_pulse_ms),
            min_angle=t.get("min_angle", _float(-360, 360), "an angle in degrees", d.min_angle),
            max_angle=t.get("max_angle", _float(-360, 360), "an angle in degrees", d.max_angle),
            home=t.get("home", _float(-360, 360), "an angle in degrees", d.home),
        )
        t.done()
        if servo.pin is None:
            raise ConfigError(f"{t.where}: {t.key('pin')}: missing; every servo needs {_PIN}")
        if servo.min_pulse_ms >= servo.max_pulse_ms:
            raise t.error(
                t.key("max_pulse_ms"),
                f"expected more than min_pulse_ms ({servo.min_pulse_ms})",
                servo.max_pulse_ms,
            )
        if servo.min_angle == servo.max_angle:
            raise t.error(t.key("max_angle"), "expected an angle different from min_angle", servo.max_angle)
        if not _within(servo.home, servo):
            raise t.error(
                t.key("home"),
                f"expected an angle between {servo.min_angle} and {servo.max_angle}",
                servo.home,
            )
        servos.append(servo)
    return tuple(servos)


def _within(angle: float, servo: ServoConfig) -> bool:
    return min(servo.min_angle, servo.max_angle) <= angle <= max(servo.min_angle, servo.max_angle)


def _read_compartments(table: _Table, servos: tuple[ServoConfig, ...]) -> dict[str, dict[str, float]]:
    if not table.data:
        raise table.error(
            table.path, "expected at least one compartment table such as [compartments.can]", {}
        )
    by_name = {s.name: s for s in servos}
    compartments: dict[str, dict[str, float]] = {}
    for name in list(table.data):
        if name == NO_COMPARTMENT:
            raise ConfigError(
                f"{table.where}: {table.key(name)}: '{NO_COMPARTMENT}' means no move; name the compartment otherwise"
            )
        t = table.table(name)
        angles = {}
        for servo_name in list(t.data):
            if servo_name not in by_name:
                raise ConfigError(
                    f"{t.where}: {t.key(servo_name)}: no servo of that name (servos: {', '.join(by_name)})"
                )
            servo = by_name[servo_name]
            angle = t.get(servo_name, _float(-360, 360), "an angle in degrees", None)
            if not _within(angle, servo):
                raise t.error(
                    t.key(servo_name),
                    f"expected an angle between {servo.min_angle} and {servo.max_angle}",
                    angle,
                )
            angles[servo_name] = angle
        t.done()
        compartments[name] = angles
    return compartments


def _read_labels(
    table: _Table, compartments: Mapping[str, Any], defaults: Mapping[str, str]
) -> dict[str, str]:
    if not table.data:
        return dict(defaults) if set(defaults.values()) <= {*compartments, NO_COMPARTMENT} else {}
    options = (*compartments, NO_COMPARTMENT)
    expected = f"a compartment ({', '.join(options)})"
    labels = {name: table.get(name, _choice(options), expected, None) for name in list(table.data)}
    table.done()
    return labels


def parse_config(data: Mapping[str, Any], *, where: str = "config", base: Path | None = None) -> Config:
    """Validate a parsed TOML document; ``base`` resolves relative paths (the file's folder)."""
    base = base or Path.cwd()
    root = _Table(dict(data), "", where)

    t = root.table("gpio")
    gpio = GpioConfig(
        pin_factory=t.get("pin_factory", _choice(PIN_FACTORIES), f"one of {', '.join(PIN_FACTORIES)}", "mock")
    )
    t.done()

    t, d = root.table("lid"), LidConfig()
    lid = LidConfig(
        pin=t.get("pin", _int(0, 27), _PIN, d.pin),
        pull_up=t.get("pull_up", _bool, "true or false", d.pull_up),
        closed_when=t.get("closed_when", _choice(LID_EDGES), "'pressed' or 'released'", d.closed_when),
        bounce_ms=t.get("bounce_ms", _int(0, 5000), "milliseconds 0-5000", d.bounce_ms),
        settle_s=t.get("settle_s", _float(0, 30), "seconds 0-30", d.settle_s),
    )
    t.done()

    t, d = root.table("camera"), CameraConfig()
    camera = CameraConfig(
        kind=t.get("kind", _choice(CAMERA_KINDS), f"one of {', '.join(CAMERA_KINDS)}", d.kind),
        source=t.get("source", _camera_source, "a path, a device index or ''", d.source),
        width=t.get("width", _int(16, 8192), "a width in pixels 16-8192", d.width),
        height=t.get("height", _int(16, 8192), "a height in pixels 16-8192", d.height),
        retries=t.get("retries", _int(0, 20), "a retry count 0-20", d.retries),
        controls=_read_controls(t.table("controls")),
    )
    t.done()
    if camera.controls and camera.kind != "picamera2":
        raise ConfigError(
            f'{where}: camera.controls: libcamera controls apply to kind = "picamera2" only, not {camera.kind!r}'
        )
    if camera.kind == "folder" and isinstance(camera.source, str):
        source = Path(camera.source).expanduser()
        camera = replace(camera, source=str(source if source.is_absolute() else base / source))

    t, d = root.table("classifier"), ClassifierConfig()
    classifier = ClassifierConfig(
        model=t.get("model", _optional_path(base), "a path to a model bundle or ''", d.model),
        threads=t.get("threads", _int(1, 64), "a thread count 1-64", d.threads),
        frames=t.get("frames", _int(1, 50), "a frame count 1-50", d.frames),
    )
    t.done()

    servos = _read_servos(root.table("servos")) if "servos" in root.data else _default_servos()
    root.used.add("servos")
    pins: dict[int, str] = {lid.pin: "lid.pin"}
    for servo in servos:
        if servo.pin in pins:
            raise ConfigError(
                f"{where}: servos.{servo.name}.pin: GPIO {servo.pin} is already used by {pins[servo.pin]}"
            )
        pins[servo.pin] = f"servos.{servo.name}.pin"
    if "compartments" in root.data:
        compartments = _read_compartments(root.table("compartments"), servos)
    else:
        compartments = _default_compartments()
        root.used.add("compartments")
        if not all(name in {s.name for s in servos} for angles in compartments.values() for name in angles):
            raise ConfigError(
                f"{where}: compartments: missing; with your own [servos] give [compartments.NAME] tables too"
            )

    t, d = root.table("sorting"), SortingConfig()
    fallback = t.get("fallback", _name, "a compartment name", d.fallback)
    if fallback not in compartments:
        raise t.error(
            t.key("fallback"), f"expected one of the compartments ({', '.join(compartments)})", fallback
        )
    sorting = SortingConfig(
        threshold=t.get("threshold", _float(0, 1), "a confidence 0-1", d.threshold),
        fallback=fallback,
        travel_s=t.get("travel_s", _float(0, 10), "seconds 0-10", d.travel_s),
        hold_s=t.get("hold_s", _float(0, 30), "seconds 0-30", d.hold_s),
        detach_when_idle=t.get("detach_when_idle", _bool, "true or false", d.detach_when_idle),
        labels=_read_labels(t.table("labels"), compartments, d.labels),
    )
    t.done()
    if not sorting.labels:
        raise ConfigError(
            f'{where}: sorting.labels: missing; map each label to a compartment, e.g. can = "can"'
        )

    t = root.table("paths")
    path_check, expected = _optional_path(base), "a path or ''"
    state_dir = t.get("state_dir", path_check, expected, None) or default_state_dir()
    paths = PathsConfig(
        state_dir=state_dir,
        models_dir=t.get("models_dir", path_check, expected, None) or state_dir / "models",
        events_db=t.get("events_db", path_check, expected, None) or state_dir / "events.db",
        images_dir=t.get("images_dir", path_check, expected, None) or state_dir / "images",
    )
    t.done()

    t, d = root.table("images"), ImagesConfig()
    images = ImagesConfig(
        save=t.get("save", _bool, "true or false", d.save),
        max_count=t.get("max_count", _int(1, 10_000_000), "a count 1-10000000", d.max_count),
        max_mb=t.get("max_mb", _float(0.1, 1_000_000), "megabytes (0.1 or more)", d.max_mb),
    )
    t.done()
    root.done()
    return Config(
        paths=paths,
        gpio=gpio,
        lid=lid,
        camera=camera,
        classifier=classifier,
        sorting=sorting,
        servos=servos,
        compartments=compartments,
        images=images,
    )


def load_config(path: Path | str | None) -> Config:
    """Read and validate a config file; ``None`` gives the built-in defaults (the simulation)."""
    if path is None:
        return parse_config({}, where="defaults")
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; 'smartbin config example' prints one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    config = parse_config(data, where=path.name, base=path.resolve().parent)
    return replace(config, source=path)
