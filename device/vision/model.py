"""Which model bundle the bin runs, and loading it so that a bad one is refused up front."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import NO_COMPARTMENT, Config
from ..errors import BundleError
from ..files import DATA_DIR
from .bundle import Bundle, load_bundle
from .classifier import Classifier

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


def check_bundle_fits(bundle: Bundle, config: Config) -> None:
    """Refuse a bundle whose labels cannot fill the bin's compartments (one-line BundleError).

    Every compartment except the fallback must receive at least one of the bundle's labels;
    labels mapped to a compartment must exist in the bundle. Labels the config maps to
    ``"none"`` or to the fallback may be missing (a model without an ``empty`` or a ``trash``
    class is fine: what it cannot name goes to the fallback anyway).
    """
    mapping = config.sorting.labels
    labels = set(bundle.labels)
    optional = {NO_COMPARTMENT, config.sorting.fallback}
    missing = sorted(
        label for label, target in mapping.items() if target not in optional and label not in labels
    )
    if missing:
        raise BundleError(
            f"{bundle.path}: model {bundle.version} has no label {', '.join(missing)} "
            f"(its labels: {', '.join(bundle.labels)}); the config sorts by those labels"
        )
    unknown = sorted(set(config.sorting.thresholds) - labels)
    if unknown:
        raise BundleError(
            f"{bundle.path}: model {bundle.version} has no label {', '.join(unknown)} "
            f"(its labels: {', '.join(bundle.labels)}); fix [sorting.thresholds]"
        )
    filled = {mapping[label] for label in labels if label in mapping}
    empty = sorted(set(config.compartments) - filled - {config.sorting.fallback})
    if empty:
        raise BundleError(
            f"{bundle.path}: model {bundle.version} sends no label to compartment {', '.join(empty)} "
            f"(its labels: {', '.join(bundle.labels)}); fix [sorting.labels] or use another model"
        )
