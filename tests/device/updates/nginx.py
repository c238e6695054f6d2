"""A real nginx (Debian's nginx-light) on 127.0.0.1 serving a folder as static files, as a CDN or
any static host would serve a fleet repository.

It runs as the current user in the foreground (``daemon off``) with its config, pid file, logs and
temporary folders in a test folder. Without nginx the tests are skipped, unless
SMARTBIN_REQUIRE_NGINX=1 (CI), where that fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from smartbin.deploy.loopback import free_port

from ...required import missing

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WAIT_S = 10.0


def need_nginx() -> None:
    if not Path(NGINX).is_file():
        missing("nginx is not installed (apt install nginx-light)", "NGINX")


class Nginx:
    """``start()``/``stop()`` nginx serving ``root`` on the same port as often as a test likes.

    ``worker_connections``: more for many clients at once (scripts/bench_fleet_updates.py);
    ``log_format``: the access log's line instead of nginx's ``combined`` (:meth:`requests` reads
    only ``combined``); ``proxy_to``: an HTTP proxy in front of that URL instead of a file server."""

    def __init__(
        self,
        folder: Path,
        root: Path,
        *,
        worker_connections: int = 64,
        log_format: str | None = None,
        proxy_to: str | None = None,
    ) -> None:
        self.folder, self.root, self.port = folder, root, free_port()
        access_log = (
            f"log_format custom '{log_format}';\n    access_log {folder}/access.log custom;"
            if log_format
            else f"access_log {folder}/access.log;"
        )
        self.config = folder / "nginx.conf"
        user = "user root;\n" if os.geteuid() == 0 else ""  # root's workers would drop to nobody
        self.config.write_text(
            f"""{user}worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    {access_log}
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port};
        root {root};
        location / {{ {f"proxy_pass {proxy_to};" if proxy_to else ""} }}
    }}
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.folder / "nginx.out", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.folder), "-c", str(self.config), "-e", str(self.folder / "error.log")],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
        out = (self.folder / "nginx.out").read_text() + (self.folder / "error.log").read_text()
        raise RuntimeError(f"nginx did not start: {out}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown, workers included
            self.proc.wait(WAIT_S)
        self.proc = None

    def requests(self) -> list[str]:
        """The request lines nginx logged, oldest first (``GET /path HTTP/1.1 206``)."""
        path = self.folder / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line.split('"')[1] + " " + line.split('"')[2].split()[0] for line in lines if '"' in line]
