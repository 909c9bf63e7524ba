"""Processes that never outlive their run, nor the study.

A run's processes are killed, whole tree at once, when
* the run is over its time (`--timeout`): a function run then executes in a child process
  started by multiprocessing's fork server (`run_in_child`; never a fork of the caller, whose
  torch may have run OpenMP threads, which a forked child can deadlock on), a command in its own
  process group (`command_preexec`), and either is killed by `kill_tree`;
* the study's process dies, by any signal, SIGKILL included:
  - each local worker process watches its parent from its start (`watch_parent`, loky's
    initializer in study.dispatch: a thread polling twice a second) and, once it is gone, kills
    every process it started and exits;
  - a run executed in the study's own process (`--jobs 1`) is `guarded`: a guardian process
    records what appears below the study while a run is in flight and kills it once the study
    is gone;
  - a timed function run's process watches its caller (multiprocessing's parent sentinel) and
    kills its own tree; a command also gets a parent-death signal (Linux's PR_SET_PDEATHSIG).

Why a polling thread for the workers rather than a parent-death signal: the signal kills only
the worker, not what the worker started (a killed process's children are re-parented and can
no longer be found); and Linux sends it when the *thread* that forked the worker ends, which
in loky is a helper thread, not the process.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import pickle
import select
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing import popen_forkserver, spawn
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
        # the runner holds SIGINT back while it forks (study.command); the command must not
        # inherit that, since a blocked signal stays blocked across exec
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
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


@contextlib.contextmanager
def guarded():
    """Around a run executed in this process, where no worker's watch covers it (`--jobs 1`: the
    study's own process; a Dask worker): whatever the run starts (a data loader's workers, a
    helper, a command, a timed run's process) is killed with its tree if this process dies, by
    a guardian process that records what appears below this one while a run is in flight."""
    if _watching or not os.path.isdir("/proc"):
        yield
        return
    _tell_guardian(b"+")
    try:
        yield
    finally:
        _tell_guardian(b"-")


_guardian: Any = None  # subprocess.Popen of this process's guardian, started with its first run
# Held while one is started and told: threads of a Dask worker start runs at once, and each
# would otherwise start a guardian of its own, its "+" and "-" reaching different ones.
_guardian_lock = threading.Lock()


def _tell_guardian(message: bytes) -> None:
    global _guardian
    with _guardian_lock:
        if _guardian is None or _guardian.poll() is not None:
            import subprocess

            # Its own session: the terminal's Ctrl-C and hang-up reach this process, which ends
            # its runs itself; the guardian ends when this process does (end of file on its
            # stdin, or its re-parenting). It starts in the folder holding this `study` package,
            # which `python -c` searches first.
            before = map(str, descendants(os.getpid()))  # not the runs': what this process had started before
            _guardian = subprocess.Popen([sys.executable, "-c", "from study.lifeline import guard; guard()", *before],
                                         stdin=subprocess.PIPE, start_new_session=True,
                                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            atexit.register(_end_guardian, _guardian)
        with contextlib.suppress(OSError):  # it died (killed by hand): this run goes unguarded
            _guardian.stdin.write(message)
            _guardian.stdin.flush()


def _end_guardian(guardian: Any) -> None:
    """At this process's normal exit: the guardian kills what the runs left running, and ends.
    Told so in words (b"!"): a process this one forked holds the pipe open, and the end of file
    it would otherwise wait for comes only once this process has exited."""
    with contextlib.suppress(OSError):
        guardian.stdin.write(b"!")
        guardian.stdin.flush()
    with contextlib.suppress(OSError):
        guardian.stdin.close()
    with contextlib.suppress(Exception):
        guardian.wait(JOIN_S)


def guard() -> None:
    """The guardian's process (`python -c`, its arguments the pids its parent had started before
    its first run): while runs of its parent are in flight (b"+" and b"-" on stdin),
    record every new process below the parent, each polling; once the parent is gone (end of
    file, or this process re-parented) or ending (b"!"), kill those still alive with their
    trees. A process that lived less than a poll (POLL_S) before the parent died may be missed,
    unless it is in a recorded run's group."""
    parent, me = os.getppid(), os.getpid()
    before = set(map(int, sys.argv[1:]))  # what the parent had started before its first run: not the runs'
    seen: dict[int, bytes] = {}  # pid: its start time (a pid reused by another process is not it)
    in_flight = 0
    # End of file alone is not enough: a process the parent forked (a data loader's worker)
    # inherits the pipe's writing end and holds it open after the parent died.
    while os.getppid() == parent:
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], POLL_S)
        if ready:
            message = os.read(sys.stdin.fileno(), 4096)
            if not message or b"!" in message:
                break
            in_flight += message.count(b"+") - message.count(b"-")
        seen = {pid: t for pid, t in seen.items() if _started(pid) == t}  # the dead forgotten
        if in_flight:
            for pid in descendants(parent):
                if pid != me and pid not in before and pid not in seen and (t := _started(pid)):
                    seen[pid] = t
    for pid, t in seen.items():  # in the order found: parents before their children
        if _started(pid) == t:
            kill_tree(pid)


def _started(pid: int) -> bytes | None:
    """When process `pid` started (clock ticks since boot), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def run_in_child(function: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> Any:
    """`function(*args)` in a fresh child process, in its own process group; its result, or
    TimedOut once `timeout` seconds have passed (the child's tree killed). `function` must be
    importable by name (a module-level function) and `args` picklable: the child is not a fork
    of this process but of a fork server (`_process`), so it inherits neither this process's
    threads (a fork of a process whose torch ran OpenMP threads can deadlock) nor its memory.
    This process's environment and working directory are the child's (spawn's preparation
    carries `sys.path` and the working directory; the environment travels with the call). An
    exception of `function` comes back as RunError: its type's name, message and traceback."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    child = _process(target=_child, args=(function, args, dict(os.environ), writer), name="seedwise-run")
    try:
        child.start()
    except (OSError, EOFError) as e:  # the fork server could not start, or died starting
        raise RuntimeError(f"the run's process could not start ({type(e).__name__}: {e})") from None
    finally:
        writer.close()
    assert child.pid is not None, "a started process has a pid"
    data = None
    try:
        with running(child.pid):
            try:
                data = _receive(reader.fileno(), child.sentinel, time.monotonic() + timeout)
            finally:  # done, over time or interrupted (Ctrl-C, SIGTERM): nothing of the run stays
                kill_tree(child.pid)
                child.join(JOIN_S)
    finally:
        reader.close()
    if data is None:
        raise TimedOut(timeout)
    if not data:
        raise RuntimeError(f"the run's process died before returning ({_how(child.exitcode)})")
    result = pickle.loads(data)
    if isinstance(result, BaseException):
        raise result
    return result


JOIN_S = 10.0  # a killed child's fork server reports its exit within this (it reaps at once)
HEADER = struct.Struct("!Q")  # a result's length, ahead of its pickle: a message, not "all until EOF"
# What every timed run's process needs, imported once, in the fork server.
PRELOAD = ["study.experiment", "study.provenance", "study.worker"]
# Heavy libraries imported once in the fork server, not once per run, if this process has them
# (the user's module imported them when the experiment was checked); importing starts no OpenMP
# threads, so forking the server stays safe. torch's optimizers import torch._dynamo (sympy,
# triton) at their first step: seconds that every run's fresh process would pay again.
PRELOAD_IF_LOADED = {"numpy": ["numpy"], "torch": ["torch", "torch.optim", "torch._dynamo"]}
_preloaded = False
_setup = threading.Lock()  # threads of a Dask worker start timed runs at once


def _process(**kwargs: Any) -> Any:
    """A process of multiprocessing's fork server (POSIX, as the rest of this module), which
    imports this module's preloads once."""
    global _preloaded
    with _setup:
        if not _preloaded:  # (once the server runs, its preloads are what they were)
            multiprocessing.get_context("forkserver").set_forkserver_preload(
                [*PRELOAD, *(m for lib, mods in PRELOAD_IF_LOADED.items() if lib in sys.modules for m in mods)])
            spawn.get_preparation_data = _mainless_when_launching(  # type: ignore[assignment]
                spawn.get_preparation_data)  # (the same signature: typeshed types it a def)
            _preloaded = True
    return _RunProcess(**kwargs)


class _RunProcess(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _MainlessPopen(process_obj)


class _MainlessPopen(popen_forkserver.Popen):
    """The fork server's Popen, but the child does not import the main module of this process
    (multiprocessing's default, so that a function defined in a script can be pickled by name):
    seedwise sends functions of its own, and a script that calls `run_study` at its top level,
    without `if __name__ == "__main__":`, would run its whole study again in every run's
    process. The preparation data the launch sends lose their two main-module entries (and a
    start method the child cannot resolve)."""

    def _launch(self, process_obj: Any) -> None:
        _launching.mainless = True  # read by spawn.get_preparation_data, in this thread only
        try:
            super()._launch(process_obj)  # type: ignore[misc]
        finally:
            _launching.mainless = False


_launching = threading.local()  # `mainless`: this thread is launching a run's process


def _mainless_when_launching(prepare: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    """spawn.get_preparation_data, installed once for good: a replacement swapped in and back
    around each launch was, with two threads launching at once, left in place by the second
    (it restored the first's), and another thread's spawn meanwhile lost its main module too."""

    def get_preparation_data(name: str) -> dict[str, Any]:
        data = prepare(name)
        if getattr(_launching, "mainless", False):
            data.pop("init_main_from_name", None)
            data.pop("init_main_from_path", None)
            # A loky worker (--jobs > 1) runs with start method "loky", a context only loky's
            # import registers: the fresh child, told to use it, died before training.
            if data.get("start_method") not in multiprocessing.get_all_start_methods():
                data.pop("start_method", None)
        return data
    return get_preparation_data


class RunError(RuntimeError):
    """An exception raised in a run's child process, as text (its class may be the user's, which
    the caller cannot import): study.worker records `type_name: message` and the traceback."""

    def __init__(self, type_name: str, message: str, trace: str, cause: str | None = None):
        super().__init__(type_name, message, trace, cause)  # all of them: the exception pickles
        self.type_name, self.message, self.seedwise_traceback = type_name, message, trace
        if cause:
            self.cause = cause  # study.dispatch's fail-fast compares it (a command's RunFailed has one)

    def __str__(self) -> str:
        return self.message


def as_run_error(e: BaseException) -> RunError:
    """`e` as a RunError, its traceback (or the one a `train_many` seed's failure kept) as text."""
    if isinstance(e, RunError):
        return e
    trace = getattr(e, "seedwise_traceback", None) or "".join(traceback.format_exception(e))
    return RunError(type(e).__name__, str(e), trace, getattr(e, "cause", None))


def _how(exitcode: int | None) -> str:
    if exitcode is None:
        return "its exit status is unknown"
    if exitcode < 0:
        return f"killed by signal {-exitcode}" + (" (SIGKILL: out of memory?)" if -exitcode == signal.SIGKILL else "")
    return f"exit status {exitcode}"


def _child(function: Callable[..., Any], args: tuple[Any, ...], env: dict[str, str], writer: Any) -> None:
    """The run's process: its own group, dying with its caller, the caller's environment."""
    os.setpgid(0, 0)
    _die_with_caller()
    os.environ.clear()
    os.environ.update(env)
    try:
        result = function(*args)
    except BaseException as e:  # noqa: BLE001 (reported to the caller, which raises it)
        result = as_run_error(e)
    try:
        data = pickle.dumps(result)
    except Exception as e:  # an unpicklable result
        data = pickle.dumps(RuntimeError(f"the run's result cannot be sent back: {type(e).__name__}: {e}"))
    for stream in (sys.stdout, sys.stderr):  # before the result: once it is read, the caller kills this process
        with contextlib.suppress(Exception):
            stream.flush()
    message = memoryview(HEADER.pack(len(data)) + data)
    while message:
        message = message[os.write(writer.fileno(), message):]
    writer.close()


def _die_with_caller() -> None:
    """In a run's process: a thread that, once the process waiting for this run's result is gone
    (killed with the study), kills everything the run started, then the run. Its parent is the
    fork server, so this watches the caller itself: multiprocessing's parent sentinel, a pipe
    the caller holds open, reads end-of-file at once when the caller dies."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        kill_tree(os.getpid())  # its descendants first, then its group, itself included
        os._exit(1)
    threading.Thread(target=watch, name="seedwise-caller-watch", daemon=True).start()


def _receive(fd: int, child_exit: int, deadline: float) -> bytes | None:
    """The child's message on `fd` (HEADER, then the pickle); b"" if the child exited (or
    closed the pipe) without sending it whole; None if `deadline` passes first. The child's exit
    is watched too: a process it started may hold the pipe open after it died."""
    buf = bytearray()
    while True:
        if len(buf) >= HEADER.size and len(buf) >= HEADER.size + HEADER.unpack_from(buf)[0]:
            return bytes(buf[HEADER.size:])
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd, child_exit], [], [], left)
        if fd in ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b""
            buf += chunk
        elif ready and not select.select([fd], [], [], 0)[0]:  # exited, and nothing of it is left to read
            return b""
