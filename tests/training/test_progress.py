"""The progress helper: a bar with count, rate and time left on a terminal; nothing anywhere else."""

from __future__ import annotations

import io
import logging

import pytest

from smartbin.device.vision.native import python_stderr
from smartbin.training import progress


class Terminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def stderr(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO) -> io.StringIO:
    """Make ``stream`` stderr, outside CI and pytest and without SMARTBIN_PROGRESS as far as the helper
    can tell. Called in each test's body: pytest sets its variable and its stderr anew for each phase."""
    for name in (progress.ENV, "CI", "PYTEST_CURRENT_TEST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.stderr", stream)
    return stream


def test_a_terminal_gets_a_bar_with_count_rate_and_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = stderr(monkeypatch, Terminal())
    assert progress.wanted()
    with progress.bar(total=3, desc="reading photos", leave=True) as steps:
        assert steps.total == 3
        steps.update()
        steps.update(2)
    drawn = terminal.getvalue()
    assert "reading photos" in drawn
    assert "3/3" in drawn
    assert "photo/s" in drawn
    assert "<00:00" in drawn  # elapsed<left


def test_no_terminal_no_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = stderr(monkeypatch, io.StringIO())
    assert not progress.wanted()
    assert list(progress.bar(range(3), desc="reading photos")) == [0, 1, 2]
    with progress.bar(total=2, desc="deploying", unit="bin") as hosts:
        hosts.update()
        hosts.set_postfix_str("1 done, 0 failed")
    assert plain.getvalue() == ""


@pytest.mark.parametrize(
    ("env", "value", "drawn"),
    [
        (progress.ENV, "1", True),
        (progress.ENV, "0", False),
        ("CI", "true", False),
        ("PYTEST_CURRENT_TEST", "t.py::test (call)", False),
    ],
)
def test_the_environment_decides_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, drawn: bool
) -> None:
    stderr(monkeypatch, Terminal())
    monkeypatch.setenv(env, value)
    assert progress.wanted() is drawn


def test_forced_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = stderr(monkeypatch, io.StringIO())
    monkeypatch.setenv(progress.ENV, "1")
    list(progress.bar(range(2), desc="evaluating"))
    assert "evaluating" in plain.getvalue()


def test_off_turns_bars_off_for_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = stderr(monkeypatch, Terminal())
    with progress.off():
        assert not progress.wanted()
        list(progress.bar(range(2), desc="epochs"))
    assert terminal.getvalue() == ""
    assert progress.wanted()


def test_log_lines_and_echoed_lines_go_above_the_bar(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = stderr(monkeypatch, Terminal())
    handler = logging.StreamHandler(python_stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with progress.bar(total=2, desc="deploying") as steps:
            steps.update()
            assert handler.stream is not python_stderr  # moved above the bar
            logging.getLogger("smartbin.test").warning("bin-1 unreachable")
            progress.echo("bin-1: deployed")
        assert handler.stream is python_stderr  # and back once the bar is closed
    finally:
        root.removeHandler(handler)
    before, after = terminal.getvalue().split("bin-1 unreachable\n")
    assert before.endswith("\r")  # the bar was cleared first: the line stands alone
    assert "deploying" in after  # and drawn again below it
    assert capsys.readouterr().out == "bin-1: deployed\n"
