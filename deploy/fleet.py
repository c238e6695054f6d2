"""Run one job per host with bounded concurrency; one result line per host."""

from __future__ import annotations

import logging
import shutil
import sys
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
        if self.outcome == NOT_STARTED:  # nothing ran: no time to tell
            return f"{self.host}: {self.outcome}: {self.detail}"
        return f"{self.host}: {self.outcome}: {self.detail} ({self.seconds:.1f} s)"


NOT_STARTED = "not started"


@dataclass(frozen=True)
class Serial:
    """Rolling batches, as Ansible's ``serial`` and ``max_fail_percentage``.

    ``sizes``: batch sizes, each a count (``"2"``) or a share of all the hosts (``"25%"``, at least
    one); the last one repeats. The run stops before the next batch when more than
    ``max_fail_percentage`` of a batch's hosts failed (0: any failure stops it).
    """

    sizes: tuple[str, ...]
    max_fail_percentage: float = 0.0

    def batches(self, hosts: Sequence[Host]) -> list[list[int]]:
        """The indexes of ``hosts`` in each batch, in order."""
        out: list[list[int]] = []
        start, i = 0, 0
        while start < len(hosts):
            size = batch_size(self.sizes[min(i, len(self.sizes) - 1)], len(hosts))
            out.append(list(range(start, min(start + size, len(hosts)))))
            start, i = start + size, i + 1
        return out

    def stops(self, batch: Sequence[HostResult]) -> bool:
        failed = sum(not r.ok for r in batch)
        return failed > 0 and 100 * failed / len(batch) > self.max_fail_percentage


def batch_size(size: str, total: int) -> int:
    """``"3"`` -> 3; ``"25%"`` of ``total`` hosts, rounded down, at least 1 (Ansible's rule)."""
    if size.endswith("%"):
        return max(1, int(float(size[:-1]) / 100 * total))
    return int(size)


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
    serial: Serial | None = None,
) -> list[HostResult]:
    """Connect to each host and run ``job``, ``jobs`` at a time.

    A job returns ``(outcome, detail)`` on success and raises :class:`Outcome`, RemoteError or
    SmartbinError on failure.
    Result lines are printed as hosts finish, above a bar named ``desc`` that counts the hosts done
    and failed; the returned list is in the order of ``hosts``.

    With ``serial`` the hosts go in its batches, one after the other (each ``jobs`` at a time); when a
    batch fails as :meth:`Serial.stops` says, the hosts after it are not connected to and end
    :data:`NOT_STARTED`, with the reason.
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

        def done(i: int, result: HostResult) -> None:
            results[i] = result
            if echo:
                progress.echo(result.line())
            failed = sum(not r.ok for r in results.values())
            hosts_bar.set_postfix_str(f"{len(results) - failed} done, {failed} failed", refresh=False)
            hosts_bar.update()

        batches = serial.batches(hosts) if serial else [list(range(len(hosts)))]
        for number, batch in enumerate(batches, 1):
            if len(batches) > 1:
                names = ", ".join(str(hosts[i]) for i in batch)
                progress.echo(f"{desc}: batch {number} of {len(batches)}: {names}", file=sys.stderr)
            futures = {pool.submit(one, hosts[i], sockets): i for i in batch}
            for future in as_completed(futures):
                done(futures[future], future.result())
            if serial and number < len(batches) and serial.stops([results[i] for i in batch]):
                why = _stopped(serial, number, len(batches), [results[i] for i in batch])
                for i in (i for later in batches[number:] for i in later):
                    done(i, HostResult(str(hosts[i]), NOT_STARTED, why, 0.0, False))
                break
    return [results[i] for i in range(len(hosts))]


def _stopped(serial: Serial, number: int, count: int, batch: Sequence[HostResult]) -> str:
    failed = [r.host for r in batch if not r.ok]
    shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
    limit = (
        f"more than --max-fail-percentage {serial.max_fail_percentage:g}"
        if serial.max_fail_percentage
        else "any failure stops a --serial run"
    )
    return (
        f"batch {number} of {count} failed on {len(failed)} of {len(batch)} bins ({shown}; {limit}), "
        "so the run stopped before this bin"
    )


def parse_hosts(texts: Sequence[str]) -> list[Host]:
    from .ssh import parse_host

    hosts = [parse_host(text) for text in texts]
    seen: set[str] = set()
    for host in hosts:
        if host.text in seen:
            raise SmartbinError(f"{host} is named twice; name each bin once")
        seen.add(host.text)
    return hosts
