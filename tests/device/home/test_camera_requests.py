"""The desk between the page's threads and the daemon's: asks, shared answers, withdrawal, closing."""

from __future__ import annotations

import threading

from smartbin.device.home.camera_requests import Answer, CameraRequests


def asking(requests: CameraRequests, kind: str, timeout: float, answers: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.append(requests.ask(kind, timeout)))
    thread.start()
    return thread


def test_askers_at_the_same_moment_share_one_answer_and_a_later_ask_waits_for_a_new_one():
    woken = threading.Semaphore(0)
    requests = CameraRequests(woken.release)
    answers: list = []
    first, second = asking(requests, "snapshot", 5, answers), asking(requests, "snapshot", 5, answers)
    assert woken.acquire(timeout=5) and woken.acquire(timeout=5)
    asked = requests.take()
    assert asked == {"snapshot": 2} and requests.take() == {}
    requests.answer("snapshot", asked["snapshot"], "frame 1")
    first.join(5), second.join(5)
    assert answers == [Answer(2, "frame 1"), Answer(2, "frame 1")]

    third = asking(requests, "snapshot", 5, answers)
    assert woken.acquire(timeout=5)
    assert third.is_alive()  # the answer there is older than this ask
    requests.answer("snapshot", requests.take()["snapshot"], error="the camera failed")
    third.join(5)
    assert answers[-1] == Answer(3, error="the camera failed")


def test_an_ask_nobody_waits_for_is_withdrawn_unless_taken():
    woken = threading.Semaphore(0)
    requests = CameraRequests(woken.release)
    assert requests.ask("calibrate", 0.01) is None
    assert requests.take() == {}  # the page gave up: no calibration later

    answers: list = []
    waiting = asking(requests, "calibrate", 5, answers)
    assert woken.acquire(timeout=5) and woken.acquire(timeout=5)
    assert requests.ask("calibrate", 0.01) is None
    waiting_for = requests.take()
    assert waiting_for == {"calibrate": 3}  # still asked: another asker waits
    requests.answer("calibrate", 3, {"set": True})
    waiting.join(5)
    assert answers == [Answer(3, {"set": True})]


def test_closing_answers_the_waiting_and_every_later_ask():
    requests = CameraRequests(lambda: None)
    answers: list = []
    waiting = asking(requests, "test", 30, answers)
    while not requests.take():  # asked
        pass
    requests.close("the bin is stopping")
    waiting.join(5)
    assert not waiting.is_alive() and answers[0].error == "the bin is stopping"
    assert requests.ask("snapshot", 30).error == "the bin is stopping"
