"""An update source over a folder of real bundles: the TUF source's stand-in in tests.

It keeps the :class:`~smartbin.device.updates.source.UpdateSource` contract: ``offer()`` says
which version the channel offers (None: nothing), ``fetch()`` hands over an unpacked copy of the
bundle, and either may raise :class:`UpdateError` as a test scripts it (a refused signature, no
network). Nothing here touches the network.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from smartbin.device.updates.source import Offer, UpdateError
from smartbin.device.vision.bundle import load_bundle


class FolderSource:
    def __init__(self, bundles: Path, work: Path, offering: str | None = None) -> None:
        self.bundles = bundles  # one folder per bundle, by name
        self.work = work
        self.offering = offering  # the folder of the bundle the channel offers, or None
        self.offer_errors: list[UpdateError] = []  # raised by the next offer() calls, in turn
        self.fetch_errors: list[UpdateError] = []  # raised by the next fetch() calls, in turn
        self.gate: threading.Event | None = None  # fetch() waits for it (set from a test's hook)
        self.offers = 0
        self.fetched: list[str] = []
        self.asked = threading.Event()  # set at each offer()

    def offer(self) -> Offer | None:
        self.offers += 1
        self.asked.set()
        if self.offer_errors:
            raise self.offer_errors.pop(0)
        if self.offering is None:
            return None
        bundle = load_bundle(self.bundles / self.offering)
        size = sum(p.stat().st_size for p in (self.bundles / self.offering).iterdir())
        return Offer("stable", bundle.version, f"{self.offering}.tar", size, bundle.sha256)

    def fetch(self, offer: Offer) -> Path:
        self.fetched.append(offer.version)
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        if self.fetch_errors:
            raise self.fetch_errors.pop(0)
        name = offer.target.removesuffix(".tar")
        out = self.work / f"{name}-{len(self.fetched)}"
        shutil.copytree(self.bundles / name, out)
        return out
