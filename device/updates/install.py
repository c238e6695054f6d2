"""Installing a fetched bundle on the daemon's thread, between items: the model store, the health
check, and the rollback when it fails.

The store (:class:`~..vision.store.ModelStore`, the one ``smartbin deploy`` uses) copies the
bundle, checks it against this bin's config, runs it once and makes it ``current``. The health
check then loads ``current`` as the daemon would and runs it on real frames of this bin (the last
item's frame as the model saw it, the empty reference, or a fresh frame of a live camera) as well
as the synthetic probe frames: every score must be finite, a probability when the manifest says
so, and not the same for every frame. A model that only breaks on this bin's pictures fails
here, and the store puts the pointers back as they were before it went live
(:meth:`~..vision.store.ModelStore.reject`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config
from ..errors import BundleError, SmartbinError
from ..vision.classifier import Classifier
from ..vision.model import load_classifier, resolve_model_path
from ..vision.store import ModelStore

REMEDY = "the bin keeps its previous model; publish a fixed bundle as a new version"


class InstallFailed(Exception):
    """One line saying why; ``remember``: the version is never tried again (False: a passing failure)."""

    def __init__(self, reason: str, *, remember: bool) -> None:
        super().__init__(reason)
        self.remember = remember


@dataclass(frozen=True)
class Installed:
    path: Path
    classifier: Classifier
    checked_on: int  # real frames of this bin the health check ran


def install(bundle_dir: Path, config: Config, frames: Sequence[np.ndarray]) -> Installed:
    """Install ``bundle_dir`` through the model store and check it (see the module docstring)."""
    if config.classifier.model is not None:
        raise InstallFailed(
            f"classifier.model pins the bin to {config.classifier.model}; remove it so the bin runs "
            "the model store's current model, which updates replace",
            remember=False,
        )
    store = ModelStore(config.paths.models_dir)
    try:
        switch = store.install(bundle_dir, config)
    except BundleError as exc:  # it does not fit or run on this bin
        raise InstallFailed(f"the model store refused it: {exc}", remember=True) from None
    except (SmartbinError, OSError) as exc:  # the store busy with a deploy, a full disk
        raise InstallFailed(f"cannot install it now: {exc}", remember=False) from None
    version = switch.current
    try:
        path = resolve_model_path(config).resolve()
        classifier = load_classifier(path, config)
        if classifier.bundle.version != version:
            raise BundleError(f"the store's current model is {classifier.bundle.version}, not {version}")
        classifier.verify(frames, remedy=REMEDY)
        for frame in frames:  # as an item's frames are: a frame too small to classify is refused
            classifier.classify(frame)
    except (SmartbinError, ValueError, RuntimeError) as exc:
        reason = f"health check failed: {exc}"
        if switch.action == "activated":
            try:
                back = store.reject(version, switch.replaced)
            except SmartbinError as undo:
                reason += f"; and the rollback failed: {undo}"
            else:
                reason += f"; rolled back to {back.current or 'the bundled default model'}"
        raise InstallFailed(reason, remember=True) from None
    return Installed(path, classifier, len(frames))
