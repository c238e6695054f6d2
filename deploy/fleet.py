"""Run one job per host with bounded concurrency; one result line per host."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from smartbin.device.errors import SmartbinError
from smartbin.training import progress

from .ssh import Connection, Host, RemoteError, SshOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostResult:
    host: str
    outcome: str  # deployed, already current, rolled back, unreachable, timed out, refused, failed, ...
    detail: str
    seconds: float
    ok: bool

    def line(self) -> str:
        return f"{self.host}: {self.outcome}: {self.detail} ({self.seconds:.1f} s)"


class Outcome(Exception):
    """Raised by a job to end with a failure outcome (a job that returns succeeded)."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome, self.detail = outcome, detail


def outcome_of(error: RemoteError) -> str:
    return {"unreachable": "unreachable", "timeout": "timed out"}.get(error.kind, "refused")


@contextmanager
def control_dir() -> Iterator[Path]:
    """A short private directory for ssh master sockets (socket paths are limited to ~100 bytes)."""
    base = "/tmp" if Path("/tmp").is_dir() else None
    path = Path(tempfile.mkdtemp(prefix="smartbin-ssh-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_on_hosts(
    hosts: Sequence[Host],
    options: SshOptions,
    job: Callable[[Connection], tuple[str, str]],
    *,
    jobs: int = 4,
    echo: bool = True,
    desc: str = "bins",
) -> list[HostResult]:
    """Connect to each host and run ``job``, ``jobs`` at a time.

    A job returns ``(outcome, detail)`` on success and raises :class:`Outcome`, RemoteError or
    SmartbinError on failure.
    Result lines are printed as hosts finish, above a bar named ``desc`` that counts the hosts done
    and failed; the returned list is in the order of ``hosts``.
    """

    def one(host: Host, sockets: Path) -> HostResult:
        start = time.monotonic()
        ok = False
        try:
            with Connection(host, options, sockets) as conn:
                outcome, detail = job(conn)
            ok = True
        except Outcome as end:
            outcome, detail = end.outcome, end.detail
        except RemoteError as exc:
            outcome, detail = outcome_of(exc), str(exc)
        except SmartbinError as exc:
            outcome, detail = "refused", str(exc)
        except Exception as exc:  # a bug: report it for this host, let the other hosts finish
            log.debug("%s: unexpected error", host, exc_info=True)
            outcome, detail = "failed", f"unexpected {type(exc).__name__}: {exc} (details with -v)"
        return HostResult(str(host), outcome, detail, time.monotonic() - start, ok)

    results: dict[int, HostResult] = {}
    with (
        control_dir() as sockets,
        ThreadPoolExecutor(max_workers=max(1, jobs)) as pool,
        progress.bar(total=len(hosts), desc=desc, unit="bin", leave=True) as hosts_bar,
    ):
        futures = {pool.submit(one, host, sockets): i for i, host in enumerate(hosts)}
        for future in as_completed(futures):
            result = future.result()
            results[futures[future]] = result
            if echo:
                progress.echo(result.line())
            failed = sum(not r.ok for r in results.values())
            hosts_bar.set_postfix_str(f"{len(results) - failed} done, {failed} failed", refresh=False)
            hosts_bar.update()
    return [results[i] for i in range(len(hosts))]


def parse_hosts(texts: Sequence[str]) -> list[Host]:
    from .ssh import parse_host

    hosts = [parse_host(text) for text in texts]
    seen: set[str] = set()
    for host in hosts:
        if host.text in seen:
            raise SmartbinError(f"{host} is named twice; name each bin once")
        seen.add(host.text)
    return hosts
