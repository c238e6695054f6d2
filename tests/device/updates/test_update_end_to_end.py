"""The whole way, as on a real bin: ``smartbin fleet`` publishes a bundle into a TUF repository that a
real nginx serves on 127.0.0.1; the daemon builds its TUF source from ``[updates]``, fetches and
verifies the bundle, installs it between items, and sorts the next item with it."""

from __future__ import annotations

import shutil

from smartbin.deploy.fleet_repo import init_repo, publish
from smartbin.device.vision.store import ModelStore

from ..conftest import MODELS, fast_config
from .test_updater import NEW, OLD, Watch


def test_a_bin_installs_what_its_owner_published_and_sorts_with_it(make_bin, tmp_path, nginx_for):
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    init_repo(repo, keys)
    root = tmp_path / "bin-root.json"
    shutil.copyfile(repo / "metadata" / "root.json", root)  # what the owner copies onto each bin
    url = nginx_for(repo).url
    models = tmp_path / "models"
    config = fast_config(
        tmp_path,
        classifier={"model": ""},
        paths={"models_dir": str(models)},
        updates={"url": url, "root": str(root), "channel": "canary", "max_rate_kb_s": 0},
    )
    ModelStore(models).install(MODELS / "colour3-int8", config)
    publish(repo, keys, MODELS / "colour3-float32", "canary", 100)

    watch = Watch()
    with make_bin("red", "blue", config=config, observers=[watch]) as b:
        assert b.item().model_version == OLD
        b.daemon.updates.updater.check_now()
        update = watch.until(lambda u: u["installed_version"] == NEW, "the published model live")
        after = b.item()

    assert update["state"] == "up to date" and update["latest_offered"] == NEW
    assert (after.label, after.compartment, after.model_version) == ("plastic", "plastic", NEW)
    assert ModelStore(models).current == NEW
