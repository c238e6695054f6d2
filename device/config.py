"""The bin's configuration: one TOML file, validated before anything touches hardware.

Every key has a default, and the defaults run the hardware-free simulation (mock pins, the
folder camera on the bundled sample photos, the bundled default model). Each wing declares its
own tables beside its code (``hardware/settings.py``: gpio, lid, camera, servos, fill, light;
``vision/settings.py``: classifier, empty; ``records/settings.py``: paths, images;
``home/settings.py``: mqtt, feedback, web; ``updates/settings.py``: updates) from the value types in :mod:`.schema`, and
:class:`Config` here assembles them with ``[sorting]`` and ``[compartments]``. Frozen
dataclasses validated by pydantic: each key's type, range and meaning are declared once, beside
its default; a check that spans keys (a GPIO pin used twice, an angle outside its servo's
range) is a validator on the class that holds those keys. A key the schema does not know, or a
value of the wrong kind, is refused in one line with its key path::

    config.toml: servos.chute.pin: expected an integer GPIO pin 0-27, got 'x'

A file with several mistakes gets the first one (fix, check again): wrong values table by table
in the order of :class:`Config`'s fields, then unknown keys.
:func:`~.commands.config_check.check_paths` adds what only the file system can tell (a state
directory that is a file, a folder camera without photos); ``smartbin config check`` runs both.

A new section is a frozen dataclass of annotated fields (each with the ``description`` that
error messages quote) in its wing's ``settings.py`` plus one field on :class:`Config`; unknown
keys, messages and the test that docs/device.md and the example name every key follow from it.
Pins it uses go through :func:`_pins_used_once` from a validator on its field.
docs/device.md lists every key; ``smartbin config example`` prints a commented file.
"""

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from .errors import ConfigError, os_error_reason
from .files import DATA_DIR
from .hardware.settings import (
    DEFAULT_SERVOS,
    CameraConfig,
    FillConfig,
    GpioConfig,
    LidConfig,
    LightConfig,
    ServoConfig,
    named_tables,
)
from .home.settings import FeedbackConfig, MqttConfig, WebConfig
from .records.settings import ImagesConfig, PathsConfig
from .schema import NOT_IN_FILE, TABLE, Angle, Bool, Name, Seconds10, Seconds30, float_in, invalid
from .updates.settings import UpdatesConfig
from .vision.settings import ClassifierConfig, EmptyConfig

NO_COMPARTMENT = "none"  # a label mapped to this does not move the servos

SYSTEM_CONFIG = Path("/etc/smartbin/config.toml")


EXAMPLE_CONFIG = DATA_DIR / "config.example.toml"


def default_config_path() -> Path | None:
    """The file ``smartbin run/status/events`` read without ``--config``.

    ``$SMARTBIN_CONFIG``, else /etc/smartbin/config.toml when it exists, else None (the
    built-in defaults).
    """
    env = os.environ.get("SMARTBIN_CONFIG")
    if env:
        return Path(env)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


DEFAULT_LABELS = {"can": "can", "glass": "glass", "plastic": "plastic", "empty": NO_COMPARTMENT}

# General waste the default model knows: the rest (fallback) compartment, whatever it is called.
REST_LABELS = ("cardboard", "paper", "trash")


def default_labels(fallback: str) -> dict[str, str]:
    """The default ``[sorting.labels]``: each recyclable to its own compartment, the rest to ``fallback``."""
    return {**DEFAULT_LABELS, **dict.fromkeys(REST_LABELS, fallback)}


def _default_compartments() -> dict[str, dict[str, float]]:
    # A chute turns to one of four compartments, then a flap drops the item into it.
    return {
        "can": {"chute": -60.0, "flap": 60.0},
        "glass": {"chute": -20.0, "flap": 60.0},
        "plastic": {"chute": 20.0, "flap": 60.0},
        "other": {"chute": 60.0, "flap": 60.0},
    }


@dataclass(frozen=True, config=TABLE)
class SortingConfig:
    # None: each label's threshold from the model's manifest (chosen for purity when it was
    # converted), else DEFAULT_THRESHOLD; a number here applies to every label.
    threshold: Annotated[float_in(0, 1, "a confidence 0-1") | None, Field(description="a confidence 0-1")] = (
        None
    )
    thresholds: Mapping[str, float_in(0, 1, "a confidence 0-1")] = Field(default_factory=dict)  # per label
    fallback: Name = "other"
    travel_s: Seconds10 = 0.4
    hold_s: Seconds30 = 0.8
    detach_when_idle: Bool = True
    labels: Mapping[str, Annotated[str, Field(strict=True, description="a compartment name or 'none'")]] = (
        Field(default_factory=dict)  # empty: see Config.sorting
    )


def _pins(
    lid: Any,
    servos: Any = (),
    fill: Mapping[str, FillConfig] | None = None,
    feedback: Any = None,
    light: Any = None,
):
    """Every GPIO pin of the bin as (key path, pin), in file order (sections not yet valid left out)."""
    pins = [("lid.pin", lid.pin)] if lid else []
    pins += [(f"servos.{s.name}.pin", s.pin) for s in servos or ()]
    for name, sensor in (fill or {}).items():
        pins += [(f"fill.{name}.echo", sensor.echo), (f"fill.{name}.trigger", sensor.trigger)]
    if feedback is not None:
        pins += [
            (f"feedback.{key}", getattr(feedback, key))
            for key in ("red", "green", "blue", "buzzer")
            if getattr(feedback, key) is not None
        ]
    if light is not None and light.pin is not None:
        pins.append(("light.pin", light.pin))
    return pins


def _pins_used_once(pins: list[tuple[str, int]]) -> None:
    """No GPIO pin serves two things; ``pins`` are (key path, pin) in file order."""
    users: dict[int, str] = {}
    for key, pin in pins:
        if pin in users:
            raise invalid(f"GPIO {pin} is already used by {users[pin]}", at=tuple(key.split(".")))
        users[pin] = key


@dataclass(frozen=True, config=TABLE)
class Config:
    gpio: GpioConfig = Field(default_factory=GpioConfig)
    lid: LidConfig = Field(default_factory=LidConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    # Servos move in this order and go home in reverse.
    servos: Annotated[
        tuple[ServoConfig, ...],
        BeforeValidator(named_tables),
        Field(description="one table per servo, such as [servos.chute]"),
    ] = Field(default=DEFAULT_SERVOS, validate_default=True)
    # compartment -> servo -> angle; a servo not named stays home. Not given (or empty): the
    # defaults, which name the default servos.
    compartments: Mapping[str, Mapping[str, Angle]] = Field(default_factory=dict, validate_default=True)
    # sorting.labels not given (or empty): the defaults, which name the default compartments.
    sorting: SortingConfig = Field(default_factory=SortingConfig, validate_default=True)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    # [fill.NAME]: a fill sensor in compartment NAME; none: no fill levels
    fill: Mapping[str, FillConfig] = Field(default_factory=dict)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    empty: EmptyConfig = Field(default_factory=EmptyConfig)
    light: LightConfig = Field(default_factory=LightConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    updates: UpdatesConfig = Field(default_factory=UpdatesConfig)
    # the file it came from; None for the built-in defaults
    source: Path | None = dataclasses.field(default=None, metadata=NOT_IN_FILE)

    def servo(self, name: str) -> ServoConfig:
        return next(s for s in self.servos if s.name == name)

    def pins(self) -> list[tuple[str, int]]:
        """Every GPIO pin the bin uses, as (key path, pin)."""
        return _pins(self.lid, self.servos, self.fill, self.feedback, self.light)

    @field_validator("servos")
    @classmethod
    def _servo_pins(cls, servos: tuple[ServoConfig, ...], info: ValidationInfo) -> tuple[ServoConfig, ...]:
        lid = info.data.get("lid")
        _pins_used_once(
            [*([("lid.pin", lid.pin)] if lid else []), *((f"servos.{s.name}.pin", s.pin) for s in servos)]
        )
        return servos

    @field_validator("compartments")
    @classmethod
    def _compartments_move_servos(cls, compartments: Mapping, info: ValidationInfo) -> Mapping:
        if "servos" not in info.data:  # the servos are wrong: that is the error to report
            return compartments
        servos = {s.name: s for s in info.data["servos"]}
        if not compartments:
            compartments = _default_compartments()
            if not all(name in servos for angles in compartments.values() for name in angles):
                raise invalid("missing; with your own [servos] give [compartments.NAME] tables too")
        home = tuple(s.home for s in servos.values())
        seen: dict[tuple[float, ...], str] = {}
        for name, angles in compartments.items():
            if name == NO_COMPARTMENT:
                raise invalid(f"'{NO_COMPARTMENT}' means no move; name the compartment otherwise", name)
            for servo_name, angle in angles.items():
                if servo_name not in servos:
                    raise invalid(f"no servo of that name (servos: {', '.join(servos)})", name, servo_name)
                if not servos[servo_name].reaches(angle):
                    raise servos[servo_name].out_of_range(angle, name, servo_name)
            pose = tuple(angles.get(s.name, s.home) for s in servos.values())
            if pose == home:
                raise invalid(
                    "every servo stays home, so an item sent there would not move; "
                    "give at least one servo an angle other than its home",
                    name,
                )
            if pose in seen:
                raise invalid(
                    f"the same angles as compartment {seen[pose]}, so both would fill one place; "
                    "give each compartment its own angles",
                    name,
                )
            seen[pose] = name
        return compartments

    @field_validator("sorting")
    @classmethod
    def _sorting_names_compartments(cls, sorting: SortingConfig, info: ValidationInfo) -> SortingConfig:
        compartments = info.data.get("compartments")
        if compartments is None:
            return sorting
        if sorting.fallback not in compartments:
            raise invalid(
                f"expected one of the compartments ({', '.join(compartments)}), got {sorting.fallback!r}",
                "fallback",
            )
        if not sorting.labels:
            if not set(DEFAULT_LABELS.values()) <= {*compartments, NO_COMPARTMENT}:
                raise invalid('missing; map each label to a compartment, e.g. can = "can"', "labels")
            sorting = dataclasses.replace(sorting, labels=default_labels(sorting.fallback))
        options = ", ".join([*compartments, NO_COMPARTMENT])
        for label, target in sorting.labels.items():
            if target not in compartments and target != NO_COMPARTMENT:
                raise invalid(f"expected a compartment ({options}), got {target!r}", "labels", label)
        return sorting

    @field_validator("mqtt")
    @classmethod
    def _photo_is_a_saved_one(cls, mqtt: MqttConfig, info: ValidationInfo) -> MqttConfig:
        images = info.data.get("images")
        if mqtt.photo and images is not None and not images.save:
            raise invalid("needs images.save = true (the photo sent is the one the bin saves)", "photo")
        return mqtt

    @field_validator("fill")
    @classmethod
    def _fill_names_compartments(cls, fill: Mapping[str, FillConfig], info: ValidationInfo) -> Mapping:
        compartments = info.data.get("compartments")
        for name in fill:
            if compartments is not None and name not in compartments:
                raise invalid(f"no compartment of that name (compartments: {', '.join(compartments)})", name)
        _pins_used_once(_pins(info.data.get("lid"), info.data.get("servos"), fill))
        return fill

    @field_validator("feedback")
    @classmethod
    def _feedback_has_pins(cls, feedback: FeedbackConfig, info: ValidationInfo) -> FeedbackConfig:
        led = [key for key in ("red", "green", "blue") if getattr(feedback, key) is not None]
        if led and len(led) < 3:
            missing = next(key for key in ("red", "green", "blue") if key not in led)
            raise invalid("missing; give red, green and blue together (an RGB LED or three LEDs)", missing)
        if not feedback.enabled and feedback != FeedbackConfig():  # an empty [feedback] is no feedback
            raise invalid("no pins; give red, green and blue (an RGB LED or three LEDs), a buzzer, or both")
        compartments = info.data.get("compartments")
        for name in feedback.compartments:
            if compartments is not None and name not in compartments:
                raise invalid(
                    f"no compartment of that name (compartments: {', '.join(compartments)})",
                    "compartments",
                    name,
                )
        _pins_used_once(_pins(info.data.get("lid"), info.data.get("servos"), info.data.get("fill"), feedback))
        return feedback

    @field_validator("light")
    @classmethod
    def _light_pin_used_once(cls, light: LightConfig, info: ValidationInfo) -> LightConfig:
        data = info.data
        _pins_used_once(
            _pins(data.get("lid"), data.get("servos"), data.get("fill"), data.get("feedback"), light)
        )
        return light

    @field_validator("source")
    @classmethod
    def _not_in_the_file(cls, source: Path | None, info: ValidationInfo) -> Path | None:
        if info.context is not None:  # parse_config: the file said "source = ..."
            raise PydanticCustomError("unknown_key", "unknown key")
        return source


_CONFIG = TypeAdapter(Config)


def file_keys(tp: Any) -> list[str]:
    """The keys a table of the file may have, in order (a servo's name is not one of them);
    for :class:`Config`, the file's sections."""
    return [f.name for f in dataclasses.fields(tp) if f.metadata.get("in_file", True)]


def _table_fields(tp: Any) -> dict[str, FieldInfo]:
    own = set(file_keys(tp))
    return {name: info for name, info in tp.__pydantic_fields__.items() if name in own}


def _declared(loc: tuple[Any, ...]) -> tuple[Any, str | None]:
    """The schema's type at ``loc`` and the description of what it expects there."""
    tp: Any = Config
    description = None
    for item in loc:
        if dataclasses.is_dataclass(tp):
            info = _table_fields(tp).get(item)
            if info is None:
                return None, None
            tp, description = info.annotation, info.description
        elif get_origin(tp) in (Mapping, dict, tuple):
            tp = get_args(tp)[-1 if get_origin(tp) is not tuple else 0]
            description = None
            if get_origin(tp) is Annotated:
                described = [m.description for m in tp.__metadata__ if isinstance(m, FieldInfo)]
                tp, description = get_args(tp)[0], next(iter(described), None)
        else:
            return None, None
    return tp, description


def _key_path(loc: tuple[Any, ...], data: Any) -> str:
    """``servos.chute.pin`` from pydantic's ``('servos', 0, 'pin')``: a position in a table of
    tables is the name of its table in the file."""
    parts = []
    for item in loc:
        if isinstance(item, int) and isinstance(data, dict) and 0 <= item < len(data):
            item = list(data)[item]
        parts.append(str(item))
        data = data.get(item) if isinstance(data, dict) else None
    return ".".join(parts)


def _one_line(exc: ValidationError, where: str, data: Mapping[str, Any]) -> ConfigError:
    error = exc.errors(include_url=False)[0]
    context = error.get("ctx") or {}
    loc = context.get("at") or (*error["loc"], *context.get("key", ()))
    kind = error["type"]
    if kind == "smartbin":
        problem = context["message"]
    elif kind in ("unexpected_keyword_argument", "extra_forbidden", "unknown_key"):
        table, _ = _declared(loc[:-1])
        known = ", ".join(sorted(_table_fields(table))) if dataclasses.is_dataclass(table) else ""
        problem = f"unknown key (known here: {known or 'none'})"
    else:
        tp, description = _declared(loc)
        if description is None and (dataclasses.is_dataclass(tp) or get_origin(tp) in (Mapping, dict)):
            description = "a table"
        elif description is None and get_origin(tp) is tuple:
            description = "a list"
            inner = get_args(tp)[0]
            if get_origin(inner) is Annotated:
                described = [m.description for m in inner.__metadata__ if isinstance(m, FieldInfo)]
                description += f", each {described[0]}" if described else ""
        if kind in ("missing", "missing_argument", "missing_keyword_argument"):
            problem = f"missing; expected {description}"
        else:
            problem = f"expected {description or 'another value'}, got {error['input']!r}"
    return ConfigError(f"{where}: {_key_path(loc, data)}: {problem}")


def parse_config(data: Mapping[str, Any], *, where: str = "config", base: Path | None = None) -> Config:
    """Validate a parsed TOML document; ``base`` resolves relative paths (the file's folder)."""
    data = dict(data)
    try:
        return _CONFIG.validate_python(data, context={"base": base or Path.cwd()})
    except ValidationError as exc:
        raise _one_line(exc, where, data) from None


def load_config(path: Path | str | None) -> Config:
    """Read and validate a config file; ``None`` gives the built-in defaults (the simulation)."""
    if path is None:
        return parse_config({}, where="defaults")
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; 'smartbin config example' prints one") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({os_error_reason(exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: cannot read the config file (not UTF-8 text); write it as UTF-8 TOML"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    config = parse_config(data, where=path.name, base=path.resolve().parent)
    return dataclasses.replace(config, source=path)
