"""One sweep, end to end: spec -> plan -> queue -> workers -> results table -> fit and report.

The Python face of ``scaling sweep``::

    sw = Sweep.open("sweeps/smoke.yaml")          # folder runs/<name>, journal store
    print(format_plan(sw.plan()))
    sw.run(workers=2)                              # resumable: run it again after any kill
    df = sw.table()
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaling.model.family import BUILT_IN, export_search_dirs
from scaling.versions import code_version
from sweeps import generation, storage_url
from sweeps.plan import PlannedRun, plan_runs, with_estimates
from sweeps.spec import SweepSpec, load_spec
from sweeps.store import Queue, Storage
from vla_core.atomic import write_atomic
from vla_core.errors import BadInput

if TYPE_CHECKING:
    from sweeps.lr_search import Search


def default_dir(spec: SweepSpec) -> Path:
    """``runs/<sweep name>`` under the current folder."""
    return Path("runs") / spec.name


class Sweep:
    """A spec bound to a local folder and a storage."""

    def __init__(self, spec: SweepSpec, sweep_dir: Path, storage: str | None = None, workers: int = 1, *,
                 new_generation: bool = False, allow_code_change: bool = False) -> None:
        self.spec = spec
        self.dir = Path(sweep_dir).resolve()
        self.storage = storage
        """The storage URL or journal path as given (may hold a password: never print it; see ``storage_shown``)."""
        self.workers = workers
        self.new_generation = new_generation
        self.allow_code_change = allow_code_change
        self.code_version = code_version()
        self.generation: generation.Generation | None = None
        self._queue: Queue | None = None
        self.launch_report = None
        """How the workers of the last :meth:`run` ended (``sweeps.launcher.LaunchReport``)."""

    @classmethod
    def open(cls, spec_path: str | Path, sweep_dir: str | Path | None = None, storage: str | None = None,
             workers: int = 1, *, new_generation: bool = False, allow_code_change: bool = False) -> Sweep:
        """Load and validate the spec and the storage; the folder defaults to ``runs/<name>``.

        ``storage`` None reads :data:`sweeps.storage_url.STORAGE_ENV`, else the journal in the folder.
        """
        spec = load_spec(spec_path)
        if any(f not in BUILT_IN for f in (*spec.family_names, spec.train_dict.get("family") or "vla")):
            # Its module, beside the spec or in this folder, is found by every worker and run this starts.
            export_search_dirs(Path(spec_path).resolve().parent, Path.cwd())
        if workers < 1:
            raise BadInput(f"--workers {workers}: must be at least 1")
        storage = storage_url.check(storage_url.from_env(storage), workers)
        if sweep_dir is not None and Path(sweep_dir).exists() and not Path(sweep_dir).is_dir():
            raise BadInput(f"--dir {sweep_dir}: is a file, not a folder")
        return cls(spec, Path(sweep_dir) if sweep_dir else default_dir(spec), storage, workers,
                   new_generation=new_generation, allow_code_change=allow_code_change)

    @property
    def storage_shown(self) -> str:
        """The storage as messages and files show it (password masked)."""
        return storage_url.mask(self.storage) if self.storage else str(self.dir / "optuna.journal")

    @property
    def queue(self) -> Queue:
        """The sweep's Optuna-backed queue (opened on first use; starts a generation if needed)."""
        if self._queue is None:
            self._queue = self._open_queue(create=True)
        return self._queue

    def existing_queue(self) -> Queue:
        """The queue of a sweep that has run (``status``, ``export``): creates nothing; BadInput if never run."""
        if self._queue is None:
            self._queue = self._open_queue(create=False)
        return self._queue

    def _open_queue(self, create: bool) -> Queue:
        store = Storage.open(self.storage, self.dir, self.workers, create=create)
        gen = generation.resolve(self.spec, store, self.code_version, create=create,
                                 new_generation=self.new_generation, allow_code_change=self.allow_code_change)
        q = Queue(gen.study, store, self.dir, self.workers, create=create)
        if create:
            generation.record(q.study, self.spec, gen)
        self.generation = gen
        return q

    # -- planning ---------------------------------------------------------------------------------
    def local_data(self) -> Any:
        """This machine's ``data`` value for RunConfig (generates the data once if the spec says so)."""
        from sweeps.data_source import local_data

        return local_data(self.spec.data, self.dir)

    def plan(self, calibrate: bool = False, lrs: dict | None = None,
             ledger_precision: dict[str, str] | None = None, record: bool = False) -> list[PlannedRun]:
        """Every run with key, N, D, FLOPs (and estimated time when ``calibrate``); reads no storage.

        With ``precision: auto`` each run also gets the precision of its size: as the spec records it,
        else as ``ledger_precision`` (size -> precision of points already enqueued), else resolved on
        this machine now (``sweeps.auto_precision``; a line on stderr says so), and written into the
        spec file only when ``record`` (the sweep's first enqueue), never by a plan alone.

        With an lr search, a size whose lr is not in ``lrs`` (``{str(size): lr}`` chosen by its search)
        has its lr_search trials in place of its own runs (`sweeps.lr_search.with_trials`).
        """
        from sweeps import auto_precision
        from sweeps.data_source import data_dims

        local = self.local_data()
        dims = data_dims(local)
        runs = plan_runs(self.spec, dims, lrs)
        self.spec, runs, notes = auto_precision.settle(self.spec, runs, local, ledger_precision, write=record)
        where = self.spec.source or "the spec"
        for line in notes:
            sys.stderr.write(f"sweep {self.spec.name}: precision auto for size {line}; "
                             + (f"recorded in {where} (auto_precision)\n" if record else
                                f"to be recorded in {where} when the sweep first runs\n"))
        if self.spec.lr_search is not None:
            from sweeps.lr_search import with_trials

            runs = with_trials(self.spec, runs, lrs or {})
        if calibrate:
            runs = self._estimated(runs, local, dims)
        return runs

    def _estimated(self, runs: list[PlannedRun], local: Any, dims: Any) -> list[PlannedRun]:
        """The runs with measured time estimates: calibrated per family where the spec trains several
        (their seconds per FLOP differ), each family's timings cached in its own file."""
        from analysis.families import file_slug
        from sweeps.calibration import calibrate as measure

        def estimate(spec: SweepSpec, part: list[PlannedRun], cache: str) -> list[PlannedRun]:
            cal = measure(spec, local, dims, part, self.dir, cache_name=cache)
            return with_estimates(part, {int(k): v for k, v in cal["seconds_per_flop"].items()}, cal["overhead_s"],
                                  {int(k): v for k, v in cal.get("val_seconds_per_flop", {}).items()})

        if not self.spec.families:
            return estimate(self.spec, runs, "calibration.json")
        by_key = {}
        for name in self.spec.family_names:
            part = [r for r in runs if r.family == name]
            by_key.update((r.key, r) for r in estimate(self.spec.for_family(name), part,
                                                       f"calibration_{file_slug(name)}.json"))
        return [by_key[r.key] for r in runs]

    def enqueue(self, only: set[str] | None = None) -> int:
        """Put every planned point in the queue once (safe under concurrent ``sweep run``), and take each
        lr search as far as it goes (`sweeps.lr_search.Search.advance`: its trials, the runs of a size
        whose search has ended).

        Args:
            only: run keys to enqueue (with the WSD stable phases they branch from); None = all.

        Raises:
            BadInput: a key in ``only`` that the spec does not plan.
        """
        from sweeps import lr_search
        from sweeps.auto_precision import in_ledger, needed

        q = self.queue  # first: opens this spec's generation, or refuses a changed spec or code
        searched = self.spec.lr_search is not None
        runs = self.plan(lrs=lr_search.chosen(q) if searched else None,
                         ledger_precision=in_ledger(q) if needed(self.spec) else None, record=True)
        if only is not None:
            ready = [r for r in runs if r.phase != lr_search.PHASE]
            try:
                runs = select_runs(ready, only, str(self.spec.source or "spec"))
            except BadInput as exc:
                if not searched:
                    raise
                raise BadInput(f"{exc}; the runs of a size with an lr search are planned once its search has "
                               "ended in this storage") from None
        self.write_local_info()
        info = q.info()
        if not info.get("n_points"):
            q.set_info(n_points=len(runs), spec_source=str(self.spec.source), dir=str(self.dir))
        assert self.generation is not None
        added = q.enqueue([generation.point(r, self.generation) for r in runs if r.phase != lr_search.PHASE])
        if self.spec.reuse and only is None:  # --only trains: that is how a reused row is checked
            from sweeps.reuse import record_reused

            reused = record_reused(q, runs, self.spec)
            if reused:
                sys.stderr.write(f"sweep {self.spec.name}: {reused} points recorded from committed rows of the same "
                                 f"run key ({', '.join(self.spec.reuse)}), not trained\n")
        if searched and only is None:
            added += self._search().advance(q)
        return added

    def _search(self) -> Search:
        """This generation's lr search on this machine (the queue is open)."""
        from sweeps.lr_search import Search

        assert self.generation is not None
        return Search(self.spec, self.generation, self.local_data())

    def write_local_info(self) -> None:
        """``SWEEP_DIR/sweep.json``: what this machine's workers need (data path, retries, name).

        The storage is recorded masked, for the reader: workers get the URL from the environment.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        study = self.queue.name
        self._write_json("sweep.json", {"sweep": self.spec.name, "study": study, "data": self.local_data(),
                                        "retries": self.spec.retries, "storage": self.storage_shown,
                                        "spec": str(Path(self.spec.source).resolve()) if self.spec.source else None,
                                        "code_version": self.code_version,
                                        "auto_precision": dict(self.spec.auto_precision)})

    # -- running ----------------------------------------------------------------------------------
    def run(self, workers: int | None = None, launcher: str = "local", progress: bool = True,
            retry_failed: bool = False, slurm: dict | None = None, only: set[str] | None = None,
            on_interrupt: str = "cancel", max_requeues: int | None = None) -> dict:
        """Enqueue, run every point with ``workers`` processes, then write results (and fit if all done).

        However the workers end (a job that fails or is cancelled, Ctrl-C or SIGTERM of this
        process), results.csv is written from the ledger; :attr:`launch_report` says how they ended.

        Args:
            retry_failed: Put points recorded as failed back in the queue first (they resume from
                their checkpoints).
            slurm: SLURM resources from the command line (over the spec's ``slurm:``).
            only: run just these keys (and the stable phases they branch from), e.g. to re-run rows
                of a committed study; the results table is written, the fit is not.
            on_interrupt: What Ctrl-C or SIGTERM does to SLURM arrays: ``cancel`` or ``leave``.
            max_requeues: How many times a timed-out SLURM task is requeued (None: the spec's
                ``slurm.max_requeues``, else submitit's 3).

        Returns:
            The final counts ``{total, completed, running, waiting, failed, diverged, pruned}``.

        Raises:
            BadInput: Before anything is queued or written: a launcher this machine lacks, or SLURM
                refusing an array (``sbatch --test-only``). After the table is written: a size whose lr
                search ended with no trial completed (its runs cannot be planned).
        """
        from sweeps.launcher import DEFAULT_REQUEUES, check_slurm, launch, preflight

        if max_requeues is None:
            max_requeues = self.spec.slurm.max_requeues
        requeues = DEFAULT_REQUEUES if max_requeues is None else max_requeues
        preflight(launcher, on_interrupt, requeues)
        if launcher == "slurm":
            check_slurm(self, workers or self.workers, slurm)
        self.enqueue(only)
        if retry_failed:
            self.queue.retry_failed()
        self.launch_report = launch(self, workers or self.workers, launcher, progress=progress, slurm=slurm,
                                    on_interrupt=on_interrupt, max_requeues=requeues)
        self.queue.requeue_stale()  # a point whose worker died counts as unfinished, not as running
        if self.spec.lr_search is not None and only is None:
            self._search().advance(self.queue)  # a search ended where its worker could not plan: its runs wait
        counts = self.finalize(fit=only is None)
        if self.spec.lr_search is not None:
            from sweeps.lr_search import stalled

            stuck = stalled(self.queue, self.spec)
            if stuck:
                raise BadInput(f"lr_search: no trial of size {', '.join(stuck)} completed; widen low/high or raise "
                               f"samples (the table is written: {self.dir / 'results.csv'})")
        return counts

    def table(self):  # -> pd.DataFrame
        """The results table from storage alone."""
        from sweeps.results import table

        return table(self.queue)

    def finalize(self, fit: bool = True) -> dict:
        """Write ``results.csv``; when every point is finished (and ``fit``), fit and write ``fit.json``
        and the report."""
        import pandas as pd

        from sweeps.results import fit_table, write_table

        df = self.table()
        write_table(df, self.dir / "results.csv")
        counts = self.queue.counts()
        if self.spec.wsd.enabled:
            self._write_json("wsd_savings.json", self.wsd_savings())
        if self.spec.lr_search is not None:
            from sweeps.lr_search import searching

            fit = fit and not searching(self.queue)  # a size whose runs are not planned yet
        if fit and counts["running"] == 0 and counts["waiting"] == 0 and counts["total"] > 0:
            fitted = fit_table(df)
            # The report also draws the blind baseline (a reference line, the success floor); analysis
            # never fits phase == blind rows.
            # Validation rows go to the report too (did the recommendation hold?); never to the fit.
            extra = df[(df["state"] == "completed") & df["phase"].isin(("blind", "validation"))]
            report_df = fitted if extra.empty else pd.concat([fitted, extra], ignore_index=True)
            if self.spec.families:
                self._fit_families_and_report(fitted, report_df)
            else:
                self._fit_and_report(fitted, report_df)
        return counts

    def wsd_savings(self) -> dict:
        """Compute of the branched sweep against independent runs of every point (from the ledger)."""
        branched = independent = 0.0
        for _, t in self.queue.point_states().values():
            a = t.user_attrs
            branched += float(a.get("flops") or 0)
            independent += float(a.get("flops_per_sample") or 0) * int(a.get("samples") or 0)
        saved = independent - branched
        return {"branched_flops": branched, "independent_flops": independent, "saved_flops": saved,
                "saved_frac": saved / independent if independent else 0.0}

    def _write_json(self, name: str, obj: dict) -> None:
        write_atomic(self.dir / name, json.dumps(obj, indent=1))

    def _fit_and_report(self, df, report_df=None) -> None:
        import analysis

        report_df = df if report_df is None else report_df
        note = self.dir / "fit_skipped.txt"
        if df["n_params"].nunique() < 2 or df["n_samples"].nunique() < 2:
            note.write_text("fit skipped: need at least two model sizes and two data sizes that completed\n")
            return
        try:
            fit = analysis.fit(report_df)  # blind rows recorded (blind_loss), never fitted
        except (BadInput, ValueError, RuntimeError) as exc:
            note.write_text(f"fit skipped: {exc}\n")
            return
        # Fitted from the in-memory table (main-phase rows only); name the file a reader can open.
        fit = dataclasses.replace(fit, source=str(self.dir / "results.csv"))
        fit.save(self.dir / "fit.json")
        analysis.write_report(report_df, self.dir, fit=fit)  # report.html + figures beside results.csv
        note.unlink(missing_ok=True)

    def _fit_families_and_report(self, df, report_df) -> None:
        """A ``families:`` sweep: each family fitted on its own rows (``fit_<family>.json``), the difference
        of their exponents bootstrapped (``families.json``), and one report of both (never one law of
        the families pooled)."""
        import analysis
        from analysis.families import fit_by_family

        note = self.dir / "fit_skipped.txt"
        for name, part in df.groupby("family"):
            if part["n_params"].nunique() < 2 or part["n_samples"].nunique() < 2:
                note.write_text(f"fit skipped: family {name} needs at least two model sizes and two data sizes "
                                "that completed\n")
                return
        try:
            fits = fit_by_family(report_df, source=str(self.dir / "results.csv"))
        except (BadInput, ValueError, RuntimeError) as exc:
            note.write_text(f"fit skipped: {exc}\n")
            return
        fits.save(self.dir / "families.json")
        analysis.write_report(report_df, self.dir, families=fits)
        note.unlink(missing_ok=True)


def select_runs(runs: list[PlannedRun], only: set[str], where: str = "spec") -> list[PlannedRun]:
    """The runs named in ``only`` plus the runs they depend on (WSD stable phases), each with the seeds it
    trains together with (``seeds_together``: a row re-run by key re-runs its group, as it was made).

    Raises:
        BadInput: a key the plan does not have (the message lists a few that it does).
    """
    by_key = {r.key: r for r in runs}
    unknown = sorted(k for k in only if k not in by_key)
    if unknown:
        raise BadInput(f"--only: {', '.join(unknown)} not planned by {where} "
                       f"(its keys: {', '.join(list(by_key)[:6])}{', ...' if len(by_key) > 6 else ''}; "
                       f"see `scaling sweep plan`)")
    members: dict[str, list[str]] = {}
    for r in runs:
        if r.group is not None:
            members.setdefault(r.group, []).append(r.key)
    keep: set[str] = set()
    todo = list(only)
    while todo:
        key = todo.pop()
        if key in keep:
            continue
        keep.add(key)
        r = by_key[key]
        todo += members.get(r.group, []) if r.group is not None else []
        if r.depends_on is not None:
            todo.append(r.depends_on)
    return [r for r in runs if r.key in keep]


def plan_as_json(runs: list[PlannedRun]) -> list[dict]:
    """The plan as plain dicts (``sweep plan --json``)."""
    return [asdict(r) for r in runs]
