"""The observers a config asks for, built for ``smartbin run``, ``smartbin simulate`` and ``config check``.

Their heavy imports (paho-mqtt, Bottle and waitress) happen only when the config needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def make_observers(config: Any, token_files: Sequence[Path] = ()) -> list[Any]:
    """The observers the config asks for (MQTT when [mqtt] names a broker, the review page when
    [web] listens; ``token_files``: see :func:`.web.app.make_app`)."""
    observers = []
    if config.mqtt.host:
        from .mqtt import MqttObserver  # paho-mqtt only when a broker is configured

        observers.append(MqttObserver(config))
    if config.web.listen:
        from .web.observer import WebObserver  # Bottle and waitress only when [web] listens

        observers.append(WebObserver(config, token_files=token_files))
    return observers
