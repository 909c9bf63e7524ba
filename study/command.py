"""A `command = "..."` experiment: a program run once per seed, its config as `{placeholders}`,
its metrics the JSON object lines it prints (epoch rows while it trains, the final line its
result); run in its own process group so a timeout kills all it started."""

from __future__ import annotations

import json
import os
import shlex
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from study.experiment_call import reporter
from study.experiment_outcome import INFO, Outcome, RunFailed, finish
from study.lifeline import TimedOut, command_preexec, kill_tree

LOG_TAIL_LINES = 40  # of a failed command's output, in its error


def placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def check_command(template: str, base: Mapping[str, Any]) -> None:
    """Every `{name}` in the command must be `seed` or a declared config key."""
    from study.params import suggest

    try:
        names = placeholders(template)
    except ValueError as e:
        raise ValueError(f"`command` is not a valid template ({e}); write {{key}} for a config value") from None
    for name in names:
        if name != "seed" and name not in base:
            raise ValueError(f"`command` uses {{{name}}}, which is not `seed` nor a key declared in "
                             f"[base]{suggest(name, [*base, 'seed'])}")


def command_argv(template: str, config: Mapping[str, Any], seed: int) -> list[str]:
    """The argv of one run: each word of the template filled in (a value never splits a word)."""
    def text(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v) if isinstance(v, list) else str(v)

    values = {k: text(v) for k, v in config.items()}
    argv = [word.format(seed=seed, **values) for word in shlex.split(template)]
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the interpreter (and venv) running seedwise
    return argv


def json_object(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def is_epoch_row(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("epoch"), int) and not isinstance(obj["epoch"], bool)


def final_metrics(lines: list[str]) -> dict[str, Any] | None:
    """The last stdout line that is a JSON object, without its "epoch" key."""
    for line in reversed(lines):
        obj = json_object(line)
        if obj is not None:
            return {k: v for k, v in obj.items() if k != "epoch"}
    return None


def run_command(template: str, folder: str | None, config: Mapping[str, Any], seed: int, *,
                log_path: Path | None = None, on_report=None, timeout: float | None = None) -> Outcome:
    """Run the command in its own process group (killed whole when the run is over `timeout`,
    interrupted or pruned, or when the study dies); its metrics from its output."""
    argv = command_argv(template, config, seed)
    started = time.perf_counter()
    lines: list[str] = []
    epochs: list[dict[str, Any]] = []
    report = reporter(epochs, on_report)
    log = open(log_path, "w") if log_path else None  # noqa: SIM115 (closed below, also on errors)
    try:
        if log:
            log.write(f"$ {shlex.join(argv)}\n")
        # Ctrl-C held back while the child is forked: one that lands in the fork's at-fork hooks
        # (logging's lock release) is printed as "Exception ignored" and lost, and the study ran
        # on. It is delivered below, once the child can be killed with its tree.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            proc = subprocess.Popen(argv, cwd=folder or None, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                    preexec_fn=command_preexec())  # setpgid and prctl: no lock taken
        except OSError as e:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            raise RunFailed(f"cannot start {argv[0]!r}: {e.strerror or e}") from None
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            raise
        assert proc.stdout is not None  # stdout=PIPE above
        # Over time: the tree is killed, its output ends, and the loop below ends with it.
        timed_out = threading.Event()

        def over_time() -> None:
            timed_out.set()
            kill_tree(proc.pid)
        deadline = threading.Timer(timeout, over_time) if timeout is not None else None
        if deadline is not None:
            deadline.daemon = True
            deadline.start()
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a Ctrl-C held back is raised here
            for line in proc.stdout:
                lines.append(line)
                if log:
                    log.write(line)
                    log.flush()
                row = json_object(line)
                if row is not None and is_epoch_row(row):  # live, so the tuner can prune
                    report(row["epoch"], **{k: v for k, v in row.items() if k not in ("epoch", INFO)})
            code = proc.wait()
        except BaseException:  # Ctrl-C, pruning, SIGTERM: never leave the child behind
            kill_tree(proc.pid)
            proc.wait()
            raise
        finally:
            if deadline is not None:
                deadline.cancel()
    finally:
        if log:
            log.close()
    where = f" (log: {log_path})" if log_path else ""
    if timed_out.is_set():
        raise TimedOut(timeout or 0.0, where)
    if code != 0:
        last = next((line.strip() for line in reversed(lines) if line.strip()), "(no output)")
        raise RunFailed(f"command exited with status {code}{where}{_tail(lines)}",
                        cause=f"command exited with status {code}: {last}")
    final = final_metrics(lines)
    if final is None:
        raise RunFailed(f"command printed no JSON object line with its metrics{where}{_tail(lines)}",
                        cause="command printed no JSON object line with its metrics")
    outcome = finish(final, epochs, started, "cpu")
    return Outcome(**{**outcome.__dict__, "log": str(log_path) if log_path else None})


def _tail(lines: list[str]) -> str:
    if not any(line.strip() for line in lines):
        return "; it printed nothing"
    return f"; last lines:\n{''.join(lines[-LOG_TAIL_LINES:])}"
