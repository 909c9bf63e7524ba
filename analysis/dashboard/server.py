"""Start the real `optuna-dashboard` on a study's storage and wait until it answers.

    with start_dashboard("sqlite:///results/my-study/study.db") as server:
        urllib.request.urlopen(f"{server.base}/api/studies")

Used by the dashboard tests and `benchmarks/browser_check.py`; `python -m analysis.report`
does not need it (it writes into the storage, which any running dashboard then shows).

The server listens on 127.0.0.1 at a free port. Its output goes to a temporary file rather
than a pipe: nobody reads a pipe while the server runs, and a full pipe would block it. When
it exits before answering, or does not answer in time, the error quotes that output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["DASHBOARD", "DashboardServer", "DashboardStartError", "free_port", "start_dashboard"]

# The console script that `pip install optuna-dashboard` puts beside this Python.
DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"


class DashboardStartError(RuntimeError):
    """optuna-dashboard exited before answering, or did not answer in time."""


@dataclass
class DashboardServer:
    """A running optuna-dashboard: its process and base URL (``http://127.0.0.1:PORT``)."""

    process: subprocess.Popen
    base: str
    log: IO[str]  # the server's stdout and stderr

    def output(self) -> str:
        """What the server has printed so far."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop within 10 s)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(storage_url: str, *, timeout: float = 30.0,
                    executable: Path = DASHBOARD) -> DashboardServer:
    """Start optuna-dashboard serving `storage_url`; return it once ``/api/studies`` answers.

    Raises `DashboardStartError`, with the server's output, when it exits first or does not
    answer within `timeout` seconds (it is stopped then), and `FileNotFoundError` when
    `executable` does not exist.
    """
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115  (stop() closes it)
    try:
        process = subprocess.Popen(
            [str(executable), storage_url, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # its output in the file as it comes
    except OSError:
        log.close()
        raise
    server = DashboardServer(process=process, base=f"http://127.0.0.1:{port}", log=log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = server.output()
            server.stop()
            raise DashboardStartError(f"optuna-dashboard exited with {process.returncode} "
                                      f"before answering: {output.strip()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.base}/api/studies", timeout=5):
                return server
        except OSError as e:
            if time.monotonic() > deadline:
                output = server.output()
                server.stop()
                raise DashboardStartError(f"optuna-dashboard did not answer within {timeout:g} s: "
                                          f"{output.strip()[-2000:]}") from e
            time.sleep(0.3)
