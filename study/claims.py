"""Atomic (arm, seed) claims, so several workers on one study never train a run twice.

Optuna's enqueue/ask pattern is not safe here: on SQLite two workers can pop the same WAITING
trial (SQLite ignores SELECT ... FOR UPDATE), train it twice, and one then dies with "Cannot
tell a COMPLETE trial". A claim is instead one INSERT into a table with a primary key on
(study, arm, seed), in the study's own database: the database itself makes it atomic, on
SQLite and PostgreSQL alike. A claim is released when its run is recorded (or fails, or the
worker is interrupted). A worker that died without releasing is detected by its heartbeat
(older than `grace_s`) or, on the same host, by its process id no longer existing; its claim
is then taken over by a conditional UPDATE, which is atomic too.

A run whose result was stored (complete or diverged) keeps its row, marked DONE: the next
worker's claim then fails at once instead of re-reading every trial to see it finished (which
made dispatching quadratic in the number of runs). A failed run's claim is deleted: it is retried.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import sqlalchemy as sa

TABLE = "seedwise_claims"
DONE = "done"  # owner of a run whose result is stored: never stale, never taken over


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_id() -> str:
    """'host:pid' of this process: who trained a run, or who is running a tuning trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


def gone_from_this_host(owner: str) -> bool:
    """True if `owner` ('host:pid', optionally ':suffix') is a process of this host that no
    longer exists: it died (kill -9, OOM killer) without releasing what it held."""
    host, _, rest = owner.partition(":")
    pid = rest.split(":", 1)[0]
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


class Claims:
    def __init__(self, engine: sa.engine.Engine, study: str, *, grace_s: float = 120.0,
                 beat_s: float = 20.0):
        self.engine, self.study, self.grace_s = engine, study, grace_s
        self.owner = f"{worker_id()}:{uuid.uuid4().hex[:8]}"
        meta = sa.MetaData()
        self.table = sa.Table(
            TABLE, meta,
            sa.Column("study", sa.String(512), primary_key=True),
            sa.Column("arm", sa.String(512), primary_key=True),
            sa.Column("seed", sa.Integer, primary_key=True),
            sa.Column("owner", sa.String(256), nullable=False),
            sa.Column("heartbeat", sa.Float, nullable=False),
        )
        try:
            meta.create_all(engine, checkfirst=True)
        except sa.exc.OperationalError:  # another worker created it between our check and CREATE
            if not sa.inspect(engine).has_table(TABLE):
                raise
        self._held: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_loop, args=(beat_s,), daemon=True)
        self._thread.start()

    def _key(self, arm: str, seed: int):
        t = self.table.c
        return (t.study == self.study) & (t.arm == arm) & (t.seed == seed)

    def _stale(self, owner: str, heartbeat: float, now: float) -> bool:
        if owner == DONE:
            return False
        if gone_from_this_host(owner):
            return True  # its process is gone: no need to wait for the heartbeat
        return now - heartbeat > self.grace_s

    def claim(self, arm: str, seed: int) -> bool:
        """True if this worker now owns (arm, seed); False if a live worker does, or it is done."""
        return self.claim_run(arm, seed) == "mine"

    def claim_run(self, arm: str, seed: int) -> str:
        """"mine" if this worker now owns (arm, seed); "busy" if a live worker does; "done" if
        its result is stored (marked by `finish`)."""
        now = time.time()
        try:
            with self.engine.begin() as con:
                con.execute(self.table.insert().values(study=self.study, arm=arm, seed=seed,
                                                       owner=self.owner, heartbeat=now))
        except sa.exc.IntegrityError:
            with self.engine.begin() as con:
                row = con.execute(sa.select(self.table.c.owner, self.table.c.heartbeat)
                                  .where(self._key(arm, seed))).first()
                if row is not None and row.owner == DONE:
                    return "done"
                if row is None or not self._stale(row.owner, row.heartbeat, now):
                    return "busy"
                # Take over only if nobody else did meanwhile (same owner and heartbeat).
                res = con.execute(self.table.update()
                                  .where(self._key(arm, seed) & (self.table.c.owner == row.owner)
                                         & (self.table.c.heartbeat == row.heartbeat))
                                  .values(owner=self.owner, heartbeat=now))
                if res.rowcount != 1:
                    return "busy"
        with self._lock:
            self._held.add((arm, seed))
        return "mine"

    def release(self, arm: str, seed: int) -> None:
        with self.engine.begin() as con:
            con.execute(self.table.delete().where(self._key(arm, seed) & (self.table.c.owner == self.owner)))
        with self._lock:
            self._held.discard((arm, seed))

    def finish(self, arm: str, seed: int) -> None:
        """Mark a held run DONE: its result is stored, no worker needs to train it again."""
        with self.engine.begin() as con:
            con.execute(self.table.update().where(self._key(arm, seed) & (self.table.c.owner == self.owner))
                        .values(owner=DONE, heartbeat=time.time()))
        with self._lock:
            self._held.discard((arm, seed))

    def forget_done(self) -> None:
        """Drop this study's DONE marks. Only for a study that holds no trial: a mark then
        outlived the study it marked (deleted, e.g. with `optuna delete-study`, and made again
        under its name), and would make every worker skip runs that were never stored."""
        with self.engine.begin() as con:
            con.execute(self.table.delete().where((self.table.c.study == self.study) & (self.table.c.owner == DONE)))

    def release_all(self) -> None:
        for arm, seed in list(self._held):
            self.release(arm, seed)

    def busy_elsewhere(self) -> list[tuple[str, int]]:
        """Runs of this study claimed by other live workers."""
        now = time.time()
        with self.engine.connect() as con:
            rows = con.execute(sa.select(self.table).where(self.table.c.study == self.study)).all()
        return [(r.arm, r.seed) for r in rows
                if r.owner not in (self.owner, DONE) and not self._stale(r.owner, r.heartbeat, now)]

    def _beat_loop(self, every: float) -> None:
        while not self._stop.wait(every):
            with self._lock:
                held = list(self._held)
            if not held:
                continue
            try:
                with self.engine.begin() as con:
                    con.execute(self.table.update()
                                .where((self.table.c.study == self.study) & (self.table.c.owner == self.owner))
                                .values(heartbeat=time.time()))
            except sa.exc.SQLAlchemyError:
                pass  # a missed beat only matters after grace_s; the next one retries

    def close(self) -> None:
        self._stop.set()
        self.release_all()
