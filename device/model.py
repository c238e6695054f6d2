"""Which model bundle the bin runs, and loading it so that a bad one is refused up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundle import load_bundle
from .classifier import Classifier
from .config import DATA_DIR, Config
from .decision import check_bundle_fits
from .errors import BundleError

DEFAULT_MODEL = DATA_DIR / "default-model"


def resolve_model_path(config: Config) -> Path:
    """``classifier.model`` if set, else ``<models_dir>/current`` if it exists, else the bundled default."""
    if config.classifier.model is not None:
        return config.classifier.model
    current = config.paths.models_dir / "current"
    if current.exists():
        return current
    return DEFAULT_MODEL


def load_classifier(path: Path, config: Config) -> Classifier:
    """Load, check and run once: a bundle that cannot classify a frame never goes live."""
    bundle = load_bundle(path)
    check_bundle_fits(bundle, config)
    classifier = Classifier(bundle, threads=config.classifier.threads)
    probe = np.full((bundle.input.height, bundle.input.width, 3), 128, np.uint8)
    try:
        scores = classifier.scores(probe)
    except (ValueError, RuntimeError) as exc:
        raise BundleError(f"{path}: the model cannot run an inference ({exc})") from None
    if not np.all(np.isfinite(scores)):
        raise BundleError(f"{path}: the model gives non-finite scores; rebuild the bundle")
    return classifier
