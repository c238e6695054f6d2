"""Stands in for ``systemctl reload smartbin`` in the deploy tests.

It does what the daemon does on SIGHUP -- resolve the model (classifier.model, else
<models_dir>/current, else the bundled default), load and check it, keep the old one if that
fails -- and writes status.json as the daemon does, with ``--pid`` as the daemon's pid (a live
process, so ``smartbin status`` reports it running).
"""

from __future__ import annotations

import argparse

from smartbin.device.config import default_config_path, load_config
from smartbin.device.errors import SmartbinError
from smartbin.device.records.state import now_iso, read_status, write_status
from smartbin.device.vision.model import load_classifier, resolve_model_path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True)
    args = parser.parse_args()
    config = load_config(default_config_path())
    status = read_status(config.paths.state_dir) or {
        "started": now_iso(),
        "items": 0,
        "last_item": None,
        "model_version": None,
        "model_path": None,
    }
    path = resolve_model_path(config)
    try:
        classifier = load_classifier(path, config)
        status |= {"model_version": classifier.bundle.version, "model_path": str(path.resolve())}
    except SmartbinError:
        pass  # the daemon keeps the model it had
    status |= {"pid": args.pid, "state": "idle", "updated": now_iso()}
    write_status(config.paths.state_dir, status)


if __name__ == "__main__":
    main()
