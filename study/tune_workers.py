"""`seedwise tune --jobs N`: N worker processes tuning one study together.

Each worker is the same `seedwise tune` command (`--worker`: tune only, no confirmation),
exactly what starting N of them by hand does: they share the study through its storage, where
Optuna's trials and study.claims' atomic claims keep them from running anything twice. This
module only starts them, gives each its share of the cores, shows their lines, and stops them
together: Ctrl-C (or SIGTERM) reaches every worker as a clean interrupt, a worker that dies is
reported at once by its number and pid with its last lines, and the exit status is the worst.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

from study.lifeline import command_preexec, kill_tree, running

KNOWN_EXITS = (0, 1, 2, 130)  # study.tune's statuses: anything else is a crash
STOP_GRACE_S = 20.0  # after a Ctrl-C, how long workers get to record what they ran before SIGKILL
POLL_S = 0.2  # a dead worker is reaped within this: a zombie's claims would look alive (study.claims)
TAIL_LINES = 15


def cores() -> int:
    """The cores this process may use (its CPU affinity where the OS says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(jobs: int, threads: int | None) -> int:
    """--threads when given (each worker's), else the cores shared out, at least one each."""
    if jobs <= 0:
        raise ValueError(f"jobs must be a positive integer, got {jobs}")
    return threads if threads is not None else max(1, cores() // jobs)


@dataclass
class Worker:
    number: int
    proc: subprocess.Popen[str]
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None

    @property
    def name(self) -> str:
        return f"worker {self.number} (pid {self.proc.pid})"


def exit_words(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _show(worker: Worker, stream: IO[str], lock: threading.Lock) -> None:
    """Copy a worker's lines to our stderr, each prefixed with its number; keep its last lines."""
    for line in stream:
        worker.tail.append(line.rstrip("\n"))
        with lock:
            print(f"[w{worker.number}] {line}", end="", file=sys.stderr, flush=True)


def run_workers(argv: list[str], jobs: int, threads: int | None) -> int:
    """Run `python -m study.tune ARGV --worker --threads T` `jobs` times at once and wait for
    all: 0 all done, 1 a trial failed or a worker crashed (each reported by name), 2 bad input,
    130 interrupted (every worker stopped)."""
    per = threads_per_worker(jobs, threads)
    command = [sys.executable, "-m", "study.tune", *argv, "--worker", "--threads", str(per)]
    print(f"tuning with {jobs} worker processes x {per} torch thread(s), sharing the study through its storage",
          file=sys.stderr, flush=True)
    lock = threading.Lock()
    workers: list[Worker] = []
    try:
        for number in range(1, jobs + 1):
            # own process group (the terminal's Ctrl-C reaches us, and we stop them), dies with us
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                    preexec_fn=command_preexec())
            worker = Worker(number, proc)
            workers.append(worker)  # at once: a Ctrl-C from here on stops it too
            worker.reader = threading.Thread(target=_show, args=(worker, proc.stdout, lock), daemon=True)
            worker.reader.start()
        return _wait(workers)
    except KeyboardInterrupt:
        _stop(workers)
        raise
    finally:
        for w in workers:  # a reader still reading (a grandchild holds the pipe) keeps its end
            if w.proc.stdout is not None and not (w.reader is not None and w.reader.is_alive()):
                with contextlib.suppress(OSError):
                    w.proc.stdout.close()


def _wait(workers: list[Worker]) -> int:
    """Wait for every worker, reporting each one that fails as soon as it does."""
    codes: dict[int, int] = {}
    with contextlib.ExitStack() as stack:
        for w in workers:  # if this process is itself a watched worker (study.lifeline), they die with it
            stack.enter_context(running(w.proc.pid))
        while len(codes) < len(workers):
            for w in workers:
                if w.number in codes or w.proc.poll() is None:
                    continue
                codes[w.number] = w.proc.returncode
                if w.reader is not None:
                    w.reader.join(timeout=5)  # its last lines first
                if w.proc.returncode not in KNOWN_EXITS:
                    last = "\n  ".join(w.tail) or "(no output)"
                    print(f"error: tuning {w.name} {exit_words(w.proc.returncode)}; the other workers go on "
                          f"(its unfinished run is taken over or retried). Its last lines:\n  {last}",
                          file=sys.stderr, flush=True)
            time.sleep(POLL_S)
    # This process was not interrupted (that is _stop's path): a worker's 130 means a signal from
    # elsewhere stopped it, a failure of this command, not an interrupt of it.
    failed = [w for w in workers if codes[w.number] != 0]
    if failed:
        print("tuning workers that did not finish cleanly: " + ", ".join(
            f"{w.name} {exit_words(codes[w.number])}" for w in failed)
            + "; what they ran is stored, rerun the same command to retry", file=sys.stderr)
    return max(code if code in (0, 1, 2) else 1 for code in codes.values())


def _stop(workers: list[Worker]) -> None:
    """Ctrl-C: interrupt every worker (each records what it finished and releases its claims),
    then kill whatever is still there after STOP_GRACE_S, with its process tree."""
    try:
        for w in workers:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(w.proc.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for w in workers:
            try:
                w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_tree(w.proc.pid)
                w.proc.wait()
            if w.reader is not None:
                w.reader.join(timeout=5)
    finally:  # a second Ctrl-C cuts the grace short: nothing is left running (no parent-death signal on macOS)
        for w in workers:
            if w.proc.poll() is None:
                kill_tree(w.proc.pid)
