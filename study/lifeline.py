"""Processes that never outlive their run, nor the study.

A run's processes are killed, whole tree at once, when
* the run is over its time (`--timeout`): a function run then executes in a forked child of
  its worker (`run_in_child`), a command in its own process group (`command_preexec`), and
  either is killed by `kill_tree`;
* the study's process dies, by any signal, SIGKILL included: each local worker process watches
  its parent from its start (`watch_parent`, loky's initializer in study.dispatch: a thread
  polling twice a second) and, once it is gone, kills every process it started and exits. A run's own process (a command, a function's forked child) also
  gets a parent-death signal (Linux's PR_SET_PDEATHSIG), which covers `--jobs 1`, where the
  runs are children of the study's process itself.

Why a polling thread for the workers rather than a parent-death signal: the signal kills only
the worker, not what the worker started (a killed process's children are re-parented and can
no longer be found); and Linux sends it when the *thread* that forked the worker ends, which
in loky is a helper thread, not the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import select
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

POLL_S = 0.5  # how often a worker looks for its parent: orphans live at most this long
PR_SET_PDEATHSIG = 1  # linux/prctl.h

_running: set[int] = set()  # process groups of this process's runs now in flight
_watching = False


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # resolved once, here: a forked child only calls it


class TimedOut(RuntimeError):
    """A run went over its `--timeout` and was killed with its process tree."""

    def __init__(self, timeout: float, where: str = ""):
        super().__init__(f"timed out after {timeout:g} s{where}")
        self.cause = f"timed out after {timeout:g} s"  # the same for every run (study.dispatch's fail-fast)


def die_with_parent(parent: int) -> None:
    """In a fresh child of `parent`: be killed when the parent dies (Linux; elsewhere, only the
    workers' watch applies). If the parent is already gone, exit now."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def command_preexec() -> Callable[[], None]:
    """`preexec_fn` of a command run: its own process group (the run's tree is one kill away,
    and the terminal's Ctrl-C reaches the runner, which then kills it), dying with its parent."""
    parent = os.getpid()

    def preexec() -> None:
        os.setpgid(0, 0)
        die_with_parent(parent)
    return preexec


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, parents before their children (from /proc; [] without it)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])  # after "(comm)", which may hold spaces
        children.setdefault(ppid, []).append(int(name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_tree(leader: int) -> None:
    """SIGKILL a run's process `leader`, its process group and every descendant. Descendants are
    listed first: once their parent is dead they are re-parented and no longer traceable."""
    tree = descendants(leader)
    for kill, target in [(os.killpg, leader), (os.kill, leader), *((os.kill, p) for p in tree)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(target, signal.SIGKILL)


@contextlib.contextmanager
def running(leader: int):
    """While a run's process group is in flight, the parent watch kills it if the study dies."""
    _running.add(leader)
    try:
        yield
    finally:
        _running.discard(leader)


def watch_parent(parent: int) -> None:
    """In a worker process: once, start the thread that, when the study's process `parent` is
    gone, kills every process this worker started and exits. Does nothing in the study's own
    process or where `parent` is not this process's parent."""
    global _watching
    if _watching or os.getpid() == parent or os.getppid() != parent:
        return
    _watching = True
    threading.Thread(target=_watch, args=(parent,), name="seedwise-parent-watch", daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:  # once the parent is dead, this process is re-parented
        time.sleep(POLL_S)
    for leader in list(_running):
        kill_tree(leader)
    for pid in reversed(descendants(os.getpid())):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    os._exit(1)


def run_in_child(body: Callable[[], Any], timeout: float) -> Any:
    """`body()` in a forked child of this process, in its own process group; its (pickled)
    result, or TimedOut once `timeout` seconds have passed (the child's tree killed). Fork, not
    spawn: the child starts at once with everything this process imported (a few ms)."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    with warnings.catch_warnings():  # Python 3.12+ warns of fork with threads: the child only runs `body`
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        _child(body, read_fd, write_fd, parent)  # never returns
    os.close(write_fd)
    data = None
    try:
        with running(pid):
            try:
                data = _read_until(read_fd, time.monotonic() + timeout)
            finally:
                if data is None:  # over time, or interrupted (Ctrl-C, SIGTERM)
                    kill_tree(pid)
                else:  # finished: anything it left running in its group goes with it
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
    finally:
        os.close(read_fd)
    if data is None:
        raise TimedOut(timeout)
    if not data:
        raise RuntimeError(f"the run's process died before returning ({_how(status)})")
    result = pickle.loads(data)
    if isinstance(result, BaseException):
        raise result
    return result


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"killed by signal {sig}" + (" (SIGKILL: out of memory?)" if sig == signal.SIGKILL else "")
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _child(body: Callable[[], Any], read_fd: int, write_fd: int, parent: int) -> None:
    code = 1
    try:
        os.close(read_fd)
        os.setpgid(0, 0)
        die_with_parent(parent)
        try:
            result = body()
        except BaseException as e:  # noqa: BLE001 (reported to the parent, which raises it)
            result = RuntimeError(f"{type(e).__name__}: {e}")
        try:
            data = pickle.dumps(result)
        except Exception as e:  # an unpicklable result
            data = pickle.dumps(RuntimeError(f"the run's result cannot be sent back: {type(e).__name__}: {e}"))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(data)
        code = 0
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)  # never back into the parent's stack (its finally blocks, atexit, pytest)


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything written to `fd` until EOF, or None if `deadline` passes first."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
