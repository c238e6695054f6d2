"""Which model bundle the bin runs, and loading it so that a bad one is refused up front."""

from __future__ import annotations

import os
from pathlib import Path

from .bundle import load_bundle
from .classifier import Classifier
from .config import DATA_DIR, Config
from .decision import check_bundle_fits
from .errors import BundleError

DEFAULT_MODEL = DATA_DIR / "default-model"


def resolve_model_path(config: Config) -> Path:
    """``classifier.model`` if set, else ``<models_dir>/current`` if it is there, else the bundled default.

    A ``current`` that points nowhere is refused like a corrupt one: silently running the
    bundled default instead would hide that the deployed model is gone.
    """
    if config.classifier.model is not None:
        return config.classifier.model
    current = config.paths.models_dir / "current"
    if current.is_symlink() and not current.exists():
        raise BundleError(
            f"{current} points at {os.readlink(current)}, which is not there; "
            "run 'smartbin store rollback' or deploy a model again"
        )
    if current.exists():
        return current
    return DEFAULT_MODEL


def load_classifier(path: Path, config: Config) -> Classifier:
    """Load, check against this bin's config, and prove it runs (the :class:`Classifier` runs it on
    test frames): a bundle that cannot classify a frame never goes live."""
    bundle = load_bundle(path)
    check_bundle_fits(bundle, config)
    return Classifier(bundle, threads=config.classifier.threads)
