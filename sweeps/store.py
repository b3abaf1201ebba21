"""The sweep's queue and ledger: an Optuna study whose trials are the sweep's runs.

Storage:
- default: a ``JournalStorage`` file ``SWEEP_DIR/optuna.journal`` (no server). Its file lock is an
  ``flock`` (released by the kernel when a holder is killed, so kill -9 never leaves a stale lock).
- ``--storage postgresql://...`` (or any SQLAlchemy URL): ``RDBStorage`` with heartbeats; a run whose
  worker stops beating for ``grace_period`` seconds is failed and put back in the queue
  (``heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback``, Optuna's successor of
  ``RetryFailedTrialCallback``). SQLite is refused with more than one worker: its locking is not
  safe for that. A lost connection (the server restarting, a failover) is ridden out: every storage
  call is retried for up to ``RECONNECT_S`` seconds, so workers and their runs live through it.
  Heartbeat interval, grace period and reconnect time can be set in the environment
  (``SWEEP_HEARTBEAT_S``, ``SWEEP_GRACE_S``, ``SWEEP_RECONNECT_S``).

Each point is one WAITING trial with ``user_attrs['run_key']``. Enqueueing runs under a lock (an
``flock`` beside the journal, or a PostgreSQL advisory lock) and skips keys already present, so any
number of concurrent ``sweep run`` processes create each point once; ``enqueue_trial(...,
skip_if_exists=True)`` is kept as a second guard. Claiming flips WAITING -> RUNNING through the
storage's own atomic transition, and a claimed trial whose key already has a live or finished trial
is retired as a duplicate, so even a duplicate created outside the lock is never run twice.

Watch a sweep in the browser (needs ``pip install optuna-dashboard``)::

    optuna-dashboard runs/<sweep>/optuna.journal          # the default journal store
    optuna-dashboard postgresql://user@host:5432/sweeps   # a shared database
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.storages.journal._file import BaseJournalFileLock
from optuna.trial import FrozenTrial, TrialState

from sweeps.data_source import file_lock
from sweeps.storage_url import check, mask, scrub
from vla_core.errors import BadInput


def _seconds(name: str, default: int) -> int:
    """A whole number of seconds from the environment variable ``name`` (default when unset)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BadInput(f"{name}={raw!r}: expected a whole number of seconds >= 1")
    return value


HEARTBEAT_S = _seconds("SWEEP_HEARTBEAT_S", 10)
"""How often a worker records that its run is alive (seconds; environment ``SWEEP_HEARTBEAT_S``)."""
GRACE_S = _seconds("SWEEP_GRACE_S", 60)
"""A run without a heartbeat for this long is presumed dead and re-queued (seconds; environment
``SWEEP_GRACE_S``). Keep it several heartbeats long: a loaded machine beats late."""
RECONNECT_S = _seconds("SWEEP_RECONNECT_S", 300)
"""How long a worker keeps retrying a database it lost (a server restart, a failover) before it gives up
(seconds; environment ``SWEEP_RECONNECT_S``)."""
if GRACE_S <= HEARTBEAT_S:
    raise BadInput(f"SWEEP_GRACE_S={GRACE_S} must exceed SWEEP_HEARTBEAT_S={HEARTBEAT_S}: a live run would look dead")
MAX_REQUEUES = 5
"""How many times a point is re-queued after its worker died, before it is recorded as failed."""
HOST = socket.gethostname()
# Re-queues a dead worker's point as a new WAITING trial with the same user attrs (run_key, config).
_RETRY = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
# Heartbeats and fail_stale_trials are marked experimental in Optuna; they are the documented way.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class FlockJournalLock(BaseJournalFileLock):
    """Journal file lock through ``flock``: released by the kernel if its holder is killed."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _advisory_key(name: str) -> int:
    """A 60-bit PostgreSQL advisory-lock key for ``name``."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:15], 16)


def _connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database connection was lost or refused, which a
    retry after the server is back can cure; bad SQL or data is not."""
    import sqlalchemy

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                            sqlalchemy.exc.DisconnectionError, sqlalchemy.exc.PendingRollbackError)):
            return True
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


_LOSS_NOTED = [float("-inf")]  # when a lost database was last reported (monotonic seconds)


def _riding_out(fn, url: str):
    """``fn`` retried while the database is unreachable, for up to :data:`RECONNECT_S` seconds."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        deadline, delay = None, 0.5
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not _connection_lost(exc):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + RECONNECT_S
                    if now - _LOSS_NOTED[0] > 30:  # one line per outage, not one per call
                        _LOSS_NOTED[0] = now
                        detail = str(getattr(exc, "__cause__", None) or exc).strip().splitlines()
                        sys.stderr.write(f"sweep: lost the database {mask(url)} "
                                         f"({scrub(detail[0] if detail else '', url)}); retrying for up to "
                                         f"{RECONNECT_S} s\n")
                elif now > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    return call


class _ReconnectingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose every call rides out a lost connection (see :func:`_riding_out`).

    Without it a worker dies at the first heartbeat that meets a restarting server, and its run with it.
    A call is retried whole; the one that cannot be repeated safely, WAITING -> RUNNING, answers
    "lost" the second time, and :meth:`Queue.requeue_stale` frees a point claimed that way.
    """


for _name in ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
              "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
              "get_study_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
              "get_trial_id_from_study_id_trial_number", "set_trial_state_values", "set_trial_intermediate_value",
              "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials",
              "get_best_trial", "record_heartbeat", "_get_stale_trial_ids"):
    _fn = getattr(optuna.storages.RDBStorage, _name)

    def _method(self, *args, _fn=_fn, **kwargs):
        return _riding_out(_fn, self.url)(self, *args, **kwargs)

    setattr(_ReconnectingRDBStorage, _name, functools.wraps(_fn)(_method))


def _rdb_storage(url: str) -> optuna.storages.RDBStorage:
    """RDBStorage with heartbeats; on PostgreSQL, schema creation is serialised by an advisory lock.

    Several processes creating Optuna's tables at once collide (``CREATE TYPE ... already exists``).

    Args:
        url: A URL checked by :func:`sweeps.storage_url.check` (driver explicit).

    Raises:
        BadInput: The database cannot be reached (the message never shows the password).
    """
    import sqlalchemy

    engine_kwargs = None
    if url.startswith("postgresql"):
        # An unreachable host is refused in seconds, not after the system's TCP timeout.
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    elif not url.startswith("sqlite"):
        engine_kwargs = {"pool_pre_ping": True}

    def make() -> optuna.storages.RDBStorage:
        return _ReconnectingRDBStorage(
            url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
            heartbeat_stale_trial_callback=_RETRY(max_retry=MAX_REQUEUES), engine_kwargs=engine_kwargs,
        )

    try:
        if not url.startswith("postgresql"):
            return make()
        engine = sqlalchemy.create_engine(url, **{k: v for k, v in engine_kwargs.items() if k == "connect_args"})
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _advisory_key("optuna-schema")})
                try:
                    return make()
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"),
                                 {"k": _advisory_key("optuna-schema")})
        finally:
            engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        why = scrub(detail[0] if detail else type(exc).__name__, url)
        raise BadInput(f"--storage {mask(url)}: cannot open ({why})") from None


def process_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (guards against pid reuse), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


# N and D as trial params, so that optuna-dashboard's tables and plots show them (user attrs it
# shows only per trial). Fixed log-scale bounds: Optuna requires one distribution per name per study.
_PARAM_RANGE = FloatDistribution(1.0, 1e18, log=True)


def _set_dashboard_params(storage: Any, t: FrozenTrial) -> None:
    a = t.user_attrs
    for name, value in (("N", a.get("n_params")), ("D", a.get("samples"))):
        if value and name not in t.params:
            storage.set_trial_param(t._trial_id, name, float(value), _PARAM_RANGE)


@dataclass
class Storage:
    """An opened Optuna storage: a journal file or a database."""

    optuna: Any
    """The ``optuna.storages`` object."""
    url: str | None
    """The database URL as opened (driver explicit; with its password: never print it), None for a journal."""
    journal_path: Path | None
    """The journal file, None for a database."""

    @property
    def is_rdb(self) -> bool:
        """True for a database (heartbeats), False for the journal file."""
        return self.journal_path is None

    @property
    def shown(self) -> str:
        """The storage as messages show it (password masked)."""
        return mask(self.url) if self.url else str(self.journal_path)

    @classmethod
    def open(cls, storage: str | None, sweep_dir: Path | None = None, workers: int = 1,
             create: bool = True) -> Storage:
        """Check and open ``storage`` (see :func:`sweeps.storage_url.check`).

        Args:
            create: Create the journal (and its folder) if absent; False: a missing journal is
                ``BadInput`` and nothing is written.
        """
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = check(storage, workers)
        if storage is None:
            if sweep_dir is None:
                raise BadInput("--storage: give a storage URL or a sweep folder")
            storage = str(Path(sweep_dir) / "optuna.journal")
        if "://" in storage:
            return cls(_rdb_storage(storage), storage, None)
        path = Path(storage)
        if not create and not path.is_file():
            where = path.parent if path.name == "optuna.journal" else path
            raise BadInput(f"{where}: no sweep here (no {path.name}); "
                           "check --dir, or run `scaling sweep run SPEC` first")
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path), lock_obj=FlockJournalLock(str(path) + ".lock"))
        return cls(JournalStorage(backend), None, path)

    def studies(self) -> list:
        """Every study in the storage (``optuna.study.FrozenStudy``: name, user attrs)."""
        return self.optuna.get_all_studies()


@dataclass
class Claim:
    """A point this worker owns: the RUNNING trial and its run key."""

    trial_id: int
    number: int
    run_key: str
    attrs: dict


class Queue:
    """An Optuna study used as the sweep's queue and ledger."""

    def __init__(self, study_name: str, storage: str | Storage | None = None, sweep_dir: Path | None = None,
                 workers: int = 1, create: bool = True) -> None:
        """Open (or create) the study.

        Args:
            study_name: The study's name in the storage (``<sweep name>@<spec fingerprint>``).
            storage: A database URL, a journal file path, an opened :class:`Storage`, or None for
                ``SWEEP_DIR/optuna.journal``.
            sweep_dir: The local sweep folder (needed for the default journal).
            workers: Worker processes on this machine (SQLite is refused with more than one).
            create: Create the study if absent (False: it must exist, as for ``sweep worker``,
                ``status`` and ``export``; nothing is created on disk then).
        """
        store = storage if isinstance(storage, Storage) else Storage.open(storage, sweep_dir, workers, create)
        self.name = study_name
        self.url = store.url
        self.is_rdb = store.is_rdb
        self.storage = store.optuna
        self.journal_path = store.journal_path
        if create:
            self.study = optuna.create_study(study_name=study_name, storage=self.storage, direction="minimize",
                                             load_if_exists=True)
        else:
            try:
                self.study = optuna.load_study(study_name=study_name, storage=self.storage)
            except KeyError:
                raise BadInput(f"--study {study_name}: no such study in {store.shown}") from None

    # -- locking ----------------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """A sweep-wide exclusive lock (enqueueing and re-queueing run under it)."""
        if self.journal_path is not None:
            with file_lock(Path(str(self.journal_path) + ".queue.lock")):
                yield
            return
        url = self.storage.url
        if url.startswith("postgresql"):
            import sqlalchemy

            key = _advisory_key(f"sweep:{self.name}")

            def locked():
                conn = self.storage.engine.connect()
                try:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                except BaseException:
                    conn.close()
                    raise
                return conn

            conn = _riding_out(locked, url)()
            try:
                yield
            finally:
                try:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                except Exception as exc:
                    if not _connection_lost(exc):
                        raise
                    # The server ended the session, and with it the lock.
                finally:
                    conn.close()
            return
        if url.startswith("sqlite:///"):
            with file_lock(Path(url[len("sqlite:///"):] + ".queue.lock")):
                yield
            return
        yield  # other databases: claim-time deduplication is the guard

    # -- ledger -----------------------------------------------------------------------------------
    def trials(self, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
        """All trials of the sweep (no deep copy: treat as read-only)."""
        return self.study.get_trials(deepcopy=False, states=states)

    def retry_failed(self) -> int:
        """Put every failed point back in the queue (a new WAITING trial); returns how many.

        The point's run folder is kept, so the retry resumes from its checkpoints.
        """
        n = 0
        with self.lock():
            for _key, (state, t) in self.point_states().items():
                if state != "failed":
                    continue
                attrs = {k: v for k, v in t.user_attrs.items()
                         if k not in ("state", "reason", "attempts", "worker", "result", "run_dir", "duplicate_of",
                                      "failed_trial", "retry_failed")}
                attrs["retried_from"] = t.number
                self.study.enqueue_trial(dict(t.system_attrs.get("fixed_params") or {}), user_attrs=attrs)
                n += 1
        return n

    def set_info(self, **info: Any) -> None:
        """Record sweep-level facts (spec, data, folder) in the study's user attrs."""
        for k, v in info.items():
            self.study.set_user_attr(k, v)

    def info(self) -> dict:
        """The sweep-level facts recorded by :meth:`set_info`."""
        return dict(self.study.user_attrs)

    def enqueue(self, points: list[dict]) -> int:
        """Add every point whose run key is not in the study yet; returns how many were added.

        Args:
            points: ``{"run_key": ..., "params": {...}, "attrs": {...}}`` per point.
        """
        with self.lock():
            return self.enqueue_locked(points)

    def enqueue_locked(self, points: list[dict]) -> int:
        """:meth:`enqueue` for a caller that holds :meth:`lock` already (the lock is not re-entrant)."""
        added = 0
        have = {t.user_attrs.get("run_key") for t in self.trials()}
        for p in points:
            if p["run_key"] in have:
                continue
            attrs = {**p["attrs"], "run_key": p["run_key"]}
            self.study.enqueue_trial(p["params"], user_attrs=attrs, skip_if_exists=True)
            have.add(p["run_key"])
            added += 1
        return added

    def _live_or_done(self, run_key: str, number: int) -> list[FrozenTrial]:
        """Other trials of ``run_key`` that finished, or run and were created before ``number``."""
        return [
            t for t in self.trials()
            if t.user_attrs.get("run_key") == run_key and t.number != number
            and t.user_attrs.get("duplicate_of") is None
            and (t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                 or (t.state == TrialState.RUNNING and t.number < number))
        ]

    def claim(self, ready: Any = None) -> Claim | None:
        """Take the next WAITING point, or None when none is ready.

        Largest FLOPs first (longest-processing-time order): the big runs start early and the small
        ones fill the gaps, so workers finish together instead of one idling on a late large run.

        Args:
            ready: Optional predicate on the trial's user attrs (WSD cooldowns wait for their stable phase).
        """
        # Under the sweep lock, so that re-queueing never sees a claimed trial before its new stamp:
        # a retried trial inherits its dead worker's stamp, and without the lock another worker's
        # requeue_stale could fail it between RUNNING and the stamp and queue the point a second time.
        with self.lock():
            return self._claim_locked(ready)

    def claim_group(self, ready: Any = None) -> list[Claim]:
        """Take the next WAITING point, as :meth:`claim`, and with it (under one lock) every ready WAITING
        point of its seed group (``seeds_together``); [] when none is ready."""
        with self.lock():
            first = self._claim_locked(ready)
            if first is None:
                return []
            claims = [first]
            group = first.attrs.get("group")
            while group is not None:
                nxt = self._claim_locked(ready, group)
                if nxt is None:
                    break
                claims.append(nxt)
            return claims

    def _claim_locked(self, ready: Any, group: str | None = None) -> Claim | None:
        for t in sorted(self.trials((TrialState.WAITING,)),
                        key=lambda t: (-float(t.user_attrs.get("flops") or 0), t.number)):
            if group is not None and t.user_attrs.get("group") != group:
                continue
            if ready is not None and not ready(t.user_attrs):
                continue
            try:
                won = self.storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if not won:
                continue
            key = t.user_attrs.get("run_key", "")
            dup = self._live_or_done(key, t.number)
            if dup:
                # Someone else owns this key: retire our copy so the point runs once.
                self.storage.set_trial_user_attr(t._trial_id, "duplicate_of", dup[0].number)
                self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
                continue
            if self.is_rdb:
                # First: from now on a silent worker counts as dead. A claim that dies before this has
                # no stamp either, and requeue_stale frees it by its age.
                self.storage.record_heartbeat(t._trial_id)
            stamp = {"host": HOST, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                     "heartbeat": time.time()}
            self.storage.set_trial_user_attr(t._trial_id, "worker", stamp)
            _set_dashboard_params(self.storage, t)
            return Claim(t._trial_id, t.number, key, dict(t.user_attrs))
        return None

    def heartbeat(self, trial_id: int) -> None:
        """Record that this worker's run is alive (native heartbeat on RDB, a user attr on the journal)."""
        if self.is_rdb:
            self.storage.record_heartbeat(trial_id)
        else:
            stamp = {"host": HOST, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                     "heartbeat": time.time()}
            self.storage.set_trial_user_attr(trial_id, "worker", stamp)

    def requeue_stale(self) -> int:
        """Fail the runs of dead workers and put their points back in the queue; returns how many.

        RDB: Optuna's heartbeat check, and a RUNNING trial claimed more than ``GRACE_S`` ago that has
        no worker stamp (its claim never finished: no heartbeat either). Journal: a RUNNING trial
        whose worker process on this host is gone (pid and start time), or whose heartbeat is older
        than ``GRACE_S``.
        """
        if self.is_rdb:
            before = len(self.trials((TrialState.WAITING,)))
            optuna.storages.fail_stale_trials(self.study)
            now = time.time()
            with self.lock():
                for t in self.trials((TrialState.RUNNING,)):
                    started = t.datetime_start.timestamp() if t.datetime_start else now
                    if "worker" not in t.user_attrs and now - started > GRACE_S:
                        self._requeue(t._trial_id)
            return max(0, len(self.trials((TrialState.WAITING,))) - before)
        n = 0
        now = time.time()
        with self.lock():
            for t in self.trials((TrialState.RUNNING,)):
                w = t.user_attrs.get("worker") or {}
                if w.get("host") == HOST and w.get("pid") is not None:
                    dead = process_start(int(w["pid"])) != w.get("pid_start")
                else:
                    # No stamp: the worker died between claiming and stamping; age from the claim.
                    started = t.datetime_start.timestamp() if t.datetime_start else now
                    dead = now - float(w.get("heartbeat", started)) > GRACE_S
                if dead and self._requeue(t._trial_id):
                    n += 1
        return n

    def _requeue(self, trial_id: int) -> bool:
        """Fail a RUNNING trial and queue its point again (as Optuna's heartbeat does); False if it had ended."""
        try:
            self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        _RETRY(max_retry=MAX_REQUEUES)(self.study, self.storage.get_trial(trial_id))
        return True

    def release(self, trial_id: int) -> None:
        """Hand a claimed point back to the queue now: its worker is stopping (SIGTERM: SLURM cancelled,
        preempted or requeued its task). The run folder is kept, so whoever takes the point resumes
        from its checkpoints."""
        with self.lock():
            self._requeue(trial_id)

    def finish(self, trial_id: int, state: TrialState, attrs: dict, value: float | None = None) -> None:
        """Store a run's outcome: user attrs first, then the final state (and value)."""
        for k, v in attrs.items():
            self.storage.set_trial_user_attr(trial_id, k, v)
        try:
            self.storage.set_trial_state_values(trial_id, state=state, values=None if value is None else [value])
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # presumed dead and re-queued meanwhile; the retry owns the point now

    def point_states(self) -> dict[str, tuple[str, FrozenTrial]]:
        """The state of every point, keyed by run key, with the trial that decides it.

        A point is completed/diverged/pruned if any of its trials finished so; else running, else
        waiting; else failed. Retired duplicates and dead-worker copies do not count.
        """
        rank = {"completed": 5, "diverged": 5, "pruned": 5, "running": 4, "waiting": 3, "failed": 2, "lost": 1}
        out: dict[str, tuple[str, FrozenTrial]] = {}
        for t in self.trials():
            key = t.user_attrs.get("run_key")
            if key is None or t.user_attrs.get("duplicate_of") is not None:
                continue
            if t.state == TrialState.COMPLETE:
                s = "completed"
            elif t.state == TrialState.PRUNED:
                s = t.user_attrs.get("state", "pruned")
            elif t.state == TrialState.RUNNING:
                s = "running"
            elif t.state == TrialState.WAITING:
                s = "waiting"
            else:
                s = "failed" if t.user_attrs.get("state") == "failed" else "lost"
            if key not in out or rank[s] > rank[out[key][0]]:
                out[key] = (s, t)
        return {k: ("failed" if s == "lost" else s, t) for k, (s, t) in out.items()}

    def counts(self) -> dict[str, int]:
        """``{total, completed, running, waiting, failed, diverged, pruned}`` over points."""
        c = {k: 0 for k in ("completed", "running", "waiting", "failed", "diverged", "pruned")}
        states = self.point_states()
        for s, _ in states.values():
            c[s] += 1
        return {"total": len(states), **c}

