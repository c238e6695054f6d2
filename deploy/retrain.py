"""``smartbin retrain``: from the bins' reviewed photos to a better model on the bins, or one line why not.

::

    collect   each bin's photos by reviewed label -> WORK/bins/<HOST>/, and its live bundle
              (<models_dir>/<current>/ copied back and checksummed) -> WORK/live/<version>/
    train     the base sets plus the bins' sets -> WORK/run (head only on cached features,
              unless the train options say otherwise)
    convert   int8 with the parity gate -> WORK/bundle
    evaluate  new and live bundle on the bins' held-out reviewed photos (the val and test part
              of the stable hash split: never trained on) and on the base sets' test split
    decide    deploy to a bin only if the new bundle is at least as good as its live one on
              the held-out photos and not worse on the base test split
    deploy    as ``smartbin deploy`` (``--dry-run``: say what would happen)

``WORK/report.md`` holds the per-class figures before and after and the photos whose verdict
changed. TensorFlow is imported only for training and conversion.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartbin.device.errors import SmartbinError
from smartbin.device.vision.bundle import Bundle, load_bundle
from smartbin.device.vision.model import DEFAULT_MODEL
from smartbin.training.dataset import Item, ScanResult, scan_dataset

from .collect import collect_from, host_folder, rsync_from
from .deploy import RemoteSide, check_plain_path, deploy_one, remote_json
from .fleet import control_dir, run_on_hosts
from .ssh import Connection, Host, RemoteError, SshOptions

HELD_OUT_SPLITS = ("val", "test")  # of the bins' photos: never trained on (val only picks the epoch)
HELD_OUT, BASE_TEST = "held-out", "base-test"  # the evaluation folders, as the reports name them
MAX_CHANGED_ROWS = 200


@dataclass(frozen=True)
class RetrainOptions:
    hosts: list[Host]
    base_sets: list[Path]
    work: Path
    train: dict[str, Any]  # TrainOptions fields besides data_dirs, out and classes
    classes: list[str] | None = None
    max_drop: float = 1.0  # the parity gate's allowance, in points
    max_base_drop: float = 0.0  # how many points worse on the base test split still counts as "not worse"
    dry_run: bool = False


@dataclass
class BinData:
    host: Host
    photos: Path  # the bin's photo set, WORK/bins/<HOST>
    reviewed: int
    live: Bundle


@dataclass
class Verdicts:
    """One bundle's evaluation: figures per evaluation folder, and what it said about each photo."""

    report: dict[str, Any]
    predicted: dict[str, str] = field(default_factory=dict)  # photo path -> label

    def figures(self, folder: str) -> dict[str, Any]:
        return self.report.get("by_source", {}).get(folder) or self.report

    def accuracy(self, folder: str) -> float:
        return float(self.figures(folder)["accuracy"])


def say(step: str, text: str) -> None:
    print(f"{step}: {text}", flush=True)


# -- collect ---------------------------------------------------------------------------------


def _fetch_live(conn: Connection, side: RemoteSide, work: Path) -> Bundle:
    """The bundle the bin runs: its store's ``current`` copied back, or the bundled default."""
    store = remote_json(conn, side.store("list"), timeout=side.command_timeout)
    current = store.get("current")
    if not current:  # the bin runs its bundled default: the same as this one's when both smartbins are
        return load_bundle(DEFAULT_MODEL)
    models_dir = check_plain_path(str(store["models_dir"]).rstrip("/"), conn)
    dest = work / "live"
    shutil.rmtree(dest / current, ignore_errors=True)
    rsync_from(conn, side, models_dir, [current], dest, recursive=True)
    bundle = load_bundle(dest / current)  # checks the model's sha256
    listed = {v["version"]: v for v in store.get("versions", [])}.get(current, {})
    if listed.get("sha256") not in (None, bundle.sha256):
        raise SmartbinError(f"the copy of {current} differs from the bin's (sha256); retrain again")
    return bundle


def gather(opts: RetrainOptions, ssh: SshOptions, side: RemoteSide) -> list[BinData]:
    """Collect every bin and fetch its live bundle; a bin that fails stops the loop."""
    bins = []
    with control_dir() as sockets:
        for host in opts.hosts:
            photos = opts.work / "bins" / host_folder(host.text)
            try:
                with Connection(host, ssh, sockets) as conn:
                    got = collect_from(conn, photos, side)
                    live = _fetch_live(conn, side, opts.work)
            except (RemoteError, SmartbinError) as exc:
                raise SmartbinError(
                    f"{host}: {exc}; retrain needs every bin it names: try again or leave that bin out"
                ) from None
            say("collect", f"{host}: {got.line if got else 'no event log yet'}; live model {live.version}")
            bins.append(BinData(host, photos, got.reviewed if got else 0, live))
    return bins


# -- train and convert -----------------------------------------------------------------------


def _scan(opts: RetrainOptions, bins: list[BinData]) -> ScanResult:
    """The photo sets to train on, checked before TensorFlow starts."""
    reviewed = [b.photos for b in bins if _has_classes(b.photos)]
    if not reviewed:
        raise SmartbinError(
            f"no reviewed photos on {', '.join(str(b.host) for b in bins)}; review some items on the bins' "
            "pages first (unreviewed photos are not training data)"
        )
    t = opts.train
    return scan_dataset(
        [*opts.base_sets, *reviewed],
        classes=opts.classes or base_classes(opts.base_sets),
        val_percent=t.get("val_percent", 15.0),
        test_percent=t.get("test_percent", 15.0),
        min_images=t.get("min_images", 10),
        min_size=t.get("min_size", 32),
    )


def base_classes(base_sets: list[Path]) -> list[str]:
    """The default classes: every class folder of the base sets (a bin's set may lack some)."""
    return sorted(
        {p.name for base in base_sets for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")}
    )


def _has_classes(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir())


def _evaluation_sets(scan: ScanResult, opts: RetrainOptions, bins: list[BinData]) -> dict[str, list[Item]]:
    """The bins' held-out reviewed photos and the base sets' test split, as the scan split them."""
    base_names = {s.name for s in scan.sets[: len(opts.base_sets)]}
    held_out = [i for i in scan.items if i.source not in base_names and i.split in HELD_OUT_SPLITS]
    base_test = [i for i in scan.items if i.source in base_names and i.split == "test"]
    if not held_out:
        n = sum(b.reviewed for b in bins)
        raise SmartbinError(
            f"none of the {n} reviewed photos is held out (the stable split puts about "
            f"{opts.train.get('val_percent', 15.0) + opts.train.get('test_percent', 15.0):g}% of them aside), "
            "so nothing can show the new model is better; review more items first"
        )
    return {HELD_OUT: held_out, BASE_TEST: base_test}


def train_and_convert(opts: RetrainOptions, scan: ScanResult) -> tuple[Path, Any]:
    """Train on the scanned sets, convert to int8 with the parity gate; the new bundle and the parity report."""
    from smartbin.device.vision.native import import_quietly

    import_quietly("tensorflow")  # its start-up lines would bury the loop's; -v shows them
    from smartbin.converters.convert import convert_run
    from smartbin.converters.parity import ParityGateError
    from smartbin.training.train import TrainOptions, train

    options = {**opts.train, "verbose": 0, "overwrite": True}
    run_dir = train(
        TrainOptions(
            data_dirs=[s.path for s in scan.sets], out=opts.work / "run", classes=scan.labels, **options
        ),
        scan,
    )
    heads = (
        "head only"
        if not options.get("fine_tune_epochs")
        else f"{options['fine_tune_epochs']} fine-tuning epochs"
    )
    say("train", f"{len(scan.items)} photos from {len(scan.sets)} sets ({heads}) -> {run_dir}")
    try:
        result = convert_run(run_dir, "int8", opts.work / "bundle", max_drop=opts.max_drop)
    except ParityGateError as exc:
        say("convert", exc.report.summary())
        raise
    say("convert", f"{result.parity.summary()} -> {result.bundle} ({result.version})")
    return result.bundle, result.parity


# -- evaluate and decide ---------------------------------------------------------------------


def _link_folder(root: Path, items: Sequence[Item]) -> Path:
    """``root/<label>/<set>--<file>``: symlinks to the photos, a folder ``evaluate`` reads."""
    shutil.rmtree(root, ignore_errors=True)
    for item in items:
        link = root / item.label / f"{item.source}--{item.path.name}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(item.path.resolve())
    return root


def evaluate(bundle: Path, folders: dict[str, Path], out: Path) -> Verdicts:
    from smartbin.converters.evaluate import evaluate_bundle

    report = evaluate_bundle(bundle, list(folders.values()), out_dir=out)
    wrong = {m["path"]: m["predicted"] for m in report["misclassified"]}
    verdicts = Verdicts(report)
    for folder in folders.values():
        for photo in sorted(folder.rglob("*")):
            if photo.parent.name in report["labels"]:  # a class the bundle lacks was not classified
                verdicts.predicted[str(photo)] = wrong.get(str(photo), photo.parent.name)
    return verdicts


def decide(
    new: Verdicts, live: Verdicts, live_version: str, max_base_drop: float, has_base: bool
) -> str | None:
    """None when the new bundle may replace ``live_version``; else the reason, in one line."""
    n = new.figures(HELD_OUT)["images"]
    ours, theirs = new.accuracy(HELD_OUT), live.accuracy(HELD_OUT)
    if ours < theirs:
        return (
            f"the new model is worse than {live_version} on the bins' {n} held-out reviewed photos "
            f"({100 * ours:.1f}% against {100 * theirs:.1f}%)"
        )
    if has_base:
        ours, theirs = new.accuracy(BASE_TEST), live.accuracy(BASE_TEST)
        if not 100 * (theirs - ours) <= max_base_drop + 1e-9:  # a NaN allowance allows nothing
            n = new.figures(BASE_TEST)["images"]
            return (
                f"the new model is worse than {live_version} on the base sets' {n} test photos "
                f"({100 * ours:.1f}% against {100 * theirs:.1f}%, allowed: {max_base_drop:g} points less)"
            )
    return None


# -- the report ------------------------------------------------------------------------------


def _class_table(new: dict[str, Any], live: dict[str, Any]) -> list[str]:
    lines = [
        "| class | photos | recall before | recall after | precision before | precision after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, after in new["per_class"].items():
        before = live["per_class"].get(label)  # None: the live model has no such class
        recall, precision = (
            (f"{100 * before['recall']:.1f}%", f"{100 * before['precision']:.1f}%") if before else ("-", "-")
        )
        lines.append(
            f"| {label} | {after['support']} | {recall} | {100 * after['recall']:.1f}% "
            f"| {precision} | {100 * after['precision']:.1f}% |"
        )
    lines.append(
        f"| **all** | {new['images']} | {100 * live['accuracy']:.1f}% | {100 * new['accuracy']:.1f}% | | |"
    )
    return lines


def write_report(
    path: Path,
    new_version: str,
    parity: Any,
    bins: list[BinData],
    comparisons: dict[str, tuple[Verdicts, str | None]],
    new: Verdicts,
    folders: dict[str, Path],
    dry_run: bool,
) -> Path:
    """WORK/report.md: per live model, the per-class figures before and after, and the changed verdicts."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Retrain {when}{' (dry run)' if dry_run else ''}",
        "",
        f"New bundle: `{new_version}`. {parity.summary()}.",
        "",
    ]
    lines += ["| bin | reviewed photos | live model | decision |", "|---|---:|---|---|"]
    for b in bins:
        _, reason = comparisons[b.live.version]
        decision = f"not deployed: {reason}" if reason else ("would deploy" if dry_run else "deploy")
        lines.append(f"| {b.host} | {b.reviewed} | `{b.live.version}` | {decision} |")
    for version, (live, _) in comparisons.items():
        for folder, title in (
            (HELD_OUT, "the bins' held-out reviewed photos"),
            (BASE_TEST, "the base sets' test split"),
        ):
            if folder in folders:
                lines += ["", f"## {version} → {new_version} on {title}", ""]
                lines += _class_table(new.figures(folder), live.figures(folder))
        changed = [
            (photo, Path(photo).parent.name, live.predicted.get(photo, "-"), label)
            for photo, label in new.predicted.items()
            if live.predicted.get(photo) != label
        ]
        lines += ["", f"## Photos that changed verdict ({version} → {new_version}): {len(changed)}", ""]
        if changed:
            lines += ["| photo | true label | before | after |", "|---|---|---|---|"]
            lines += [
                f"| {Path(photo).parent.parent.name}/{Path(photo).name} | {truth} | {before}"
                f"{' ✓' if before == truth else ''} | {after}{' ✓' if after == truth else ''} |"
                for photo, truth, before, after in changed[:MAX_CHANGED_ROWS]
            ]
            if len(changed) > MAX_CHANGED_ROWS:
                lines.append(
                    f"\n… and {len(changed) - MAX_CHANGED_ROWS} more (metrics.json of each evaluation)."
                )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the loop --------------------------------------------------------------------------------


def retrain(opts: RetrainOptions, ssh: SshOptions, side: RemoteSide) -> int:
    """The whole loop; 0 when every bin got the new model (or, dry, would), 1 otherwise."""
    opts.work.mkdir(parents=True, exist_ok=True)
    bins = gather(opts, ssh, side)
    scan = _scan(opts, bins)
    held = _evaluation_sets(scan, opts, bins)
    bundle_path, parity = train_and_convert(opts, scan)
    new_bundle = load_bundle(bundle_path)

    eval_root = opts.work / "evaluation"
    folders = {name: _link_folder(eval_root / name, items) for name, items in held.items() if items}
    new = evaluate(bundle_path, folders, eval_root / f"new-{new_bundle.version}")
    comparisons: dict[str, tuple[Verdicts, str | None]] = {}
    for b in bins:
        if b.live.version in comparisons:
            continue
        live = evaluate(b.live.path, folders, eval_root / f"live-{b.live.version}")
        reason = decide(new, live, b.live.version, opts.max_base_drop, BASE_TEST in folders)
        comparisons[b.live.version] = (live, reason)
        figures = ", ".join(
            f"{name} {100 * live.accuracy(name):.1f}% -> {100 * new.accuracy(name):.1f}% "
            f"({new.figures(name)['images']} photos)"
            for name in folders
        )
        say("evaluate", f"{b.live.version} -> {new_bundle.version}: {figures}")
    report = write_report(
        opts.work / "report.md", new_bundle.version, parity, bins, comparisons, new, folders, opts.dry_run
    )
    say("report", str(report))

    refused = [(b, comparisons[b.live.version][1]) for b in bins if comparisons[b.live.version][1]]
    chosen = [b.host for b in bins if not comparisons[b.live.version][1]]
    for b in bins:
        reason = comparisons[b.live.version][1]
        verdict = f"at least as good as {b.live.version}" + (" on both" if BASE_TEST in folders else "")
        say("decide", f"{b.host}: {f'not deployed: {reason}' if reason else f'deploy: {verdict}'}")
    if not chosen:
        raise SmartbinError(f"not deployed: {refused[0][1]}; see {report}")
    results = run_on_hosts(
        chosen, ssh, lambda conn: deploy_one(conn, new_bundle, side, dry_run=opts.dry_run), desc="deploying"
    )
    return 1 if refused or not all(r.ok for r in results) else 0
