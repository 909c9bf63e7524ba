"""Soak test (run by hand, not in CI): kill a study at random moments, restart it, repeat.

    python benchmarks/soak.py --kills 20 --seeds 6

Each round starts `python -m study.run` (smoke preset, small subsets), waits a random time,
then sends SIGKILL (or, at random, SIGTERM / SIGINT) and starts again. At the end one more
invocation must find exactly arms x seeds complete runs, no duplicate (arm, seed), no trial
left RUNNING and no claim left behind. Prints one line per round and a verdict; exit 1 on failure.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--seed", type=int, default=0, help="seed of the kill schedule")
    p.add_argument("--max-wait", type=float, default=8.0, help="longest time before a kill (s)")
    args = p.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="seedwise-soak-"))
    cmd = [sys.executable, "-m", "study.run", "--preset", "smoke", "--results", str(root), "--seeds",
           str(args.seeds), "--set", "train_size=1000"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.time()
    for k in range(args.kills):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait = rng.uniform(0.5, args.max_wait)
        time.sleep(wait)
        sig = rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
        proc.send_signal(sig)
        proc.wait(timeout=120)
        done = count(root)
        print(f"round {k + 1:2d}: {signal.Signals(sig).name:7s} after {wait:4.1f}s -> "
              f"{done[0]} complete trials, {done[1]} running, exit {proc.returncode}", flush=True)
    final = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    complete, running, claims, distinct = count(root)
    planned = 5 * args.seeds
    ok = final.returncode == 0 and complete == planned == distinct and running == 0 and claims == 0
    print(f"final: exit {final.returncode}, {complete} complete trials ({distinct} distinct arm/seed) of "
          f"{planned} planned, {running} running, {claims} claims left; {time.time() - started:.0f}s; "
          f"{'OK' if ok else 'FAILED'} ({root})")
    return 0 if ok else 1


def count(root: Path) -> tuple[int, int, int, int]:
    dbs = list(root.glob("*/study.db"))
    if not dbs:
        return 0, 0, 0, 0
    with sqlite3.connect(dbs[0]) as con:
        try:
            complete = con.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
            running = con.execute("select count(*) from trials where state = 'RUNNING'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0, 0, 0, 0
        try:
            claims = con.execute("select count(*) from seedwise_claims").fetchone()[0]
        except sqlite3.OperationalError:
            claims = 0
        rows = con.execute("select t.trial_id from trials t where t.state = 'COMPLETE'").fetchall()
        keys = set()
        for (tid,) in rows:
            params = dict(con.execute("select param_name, param_value from trial_params where trial_id = ?",
                                      (tid,)).fetchall())
            keys.add((params.get("arm"), params.get("seed")))
        distinct = len(keys)
    return complete, running, claims, distinct


if __name__ == "__main__":
    sys.exit(main())
