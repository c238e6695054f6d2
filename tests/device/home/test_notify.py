"""sd_notify datagrams on a real Unix socket, path and abstract names."""

from __future__ import annotations

import os
import socket
import uuid

from smartbin.device.home.notify import Notifier


def receive(sock: socket.socket) -> str:
    sock.settimeout(5)
    return sock.recv(4096).decode()


def test_messages_reach_a_socket_path(tmp_path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        notifier.ready("model m, 0 items")
        notifier.status("model m, 1 items")
        notifier.reloading()
        notifier.stopping()
        assert receive(server) == "READY=1\nSTATUS=model m, 0 items"
        assert receive(server) == "STATUS=model m, 1 items"
        reloading = receive(server).splitlines()
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        assert receive(server) == "STOPPING=1"
        notifier.close()


def test_abstract_socket_names(tmp_path):
    name = f"smartbin-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.ready("up")
        assert receive(server).startswith("READY=1")


def test_watchdog_pings_at_half_the_interval(tmp_path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.setblocking(False)
        notifier = Notifier(
            {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
        )
        assert notifier.watchdog_interval == 1.0
        notifier.watchdog(now=100.0)
        notifier.watchdog(now=100.5)  # too soon: no ping
        notifier.watchdog(now=101.0)
        assert [server.recv(64), server.recv(64)] == [b"WATCHDOG=1", b"WATCHDOG=1"]
        try:
            server.recv(64)
            raise AssertionError("a third ping was sent")
        except BlockingIOError:
            pass


def test_without_systemd_everything_is_a_no_op():
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()


def test_a_watchdog_meant_for_another_process_is_ignored():
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
