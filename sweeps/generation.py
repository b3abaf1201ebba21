"""Which study of the storage holds this spec's points: one study per (spec fingerprint, code version).

A sweep's points live in the Optuna study ``<name>@<id>``, where ``id`` hashes the spec's
fingerprint (:meth:`SweepSpec.fingerprint`: everything that decides the runs) and the code version
(:func:`scaling.versions.code_version`). So two specs that share a ``name`` never merge, even in one
PostgreSQL database, and an edited spec never piles new runs onto old ones:

- the same spec and code again: the same study (resume);
- a changed spec: refused with what changed, unless ``--new-generation``, which starts the next
  generation (a new study: its results table and fit use its own points only; a point whose run
  key is unchanged finds its finished run folder and is not trained again);
- the same spec, other code: refused, unless ``--allow-code-change`` (continue the old generation:
  finished runs are kept, each row records the code version that made it) or ``--new-generation``
  (every point again with this code: the worker moves a finished run of other code aside,
  ``runs/<key>.code-<version>``, and trains it again).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sweeps.spec import SweepSpec, describe_changes
from sweeps.store import Storage
from vla_core.errors import BadInput

if TYPE_CHECKING:
    from sweeps.points import PlannedRun


@dataclass(frozen=True)
class Generation:
    """One study of a sweep: a spec fingerprint run by one code version."""

    study: str
    """Optuna study name ``<sweep name>@<12 hex digits>``."""
    number: int
    """1 for the first generation of a sweep name in this storage, then 2, 3, ..."""
    spec_fingerprint: str
    """:meth:`SweepSpec.fingerprint` of the spec that planned its points."""
    code_version: str | None
    """The code version its run keys were made for (None: a sweep started before versions were recorded)."""
    exists: bool
    """False when the study is still to be created."""


def _legacy(store: Storage, name: str) -> bool:
    return any(s.study_name == name and "spec_fingerprint" not in s.user_attrs for s in store.studies())


def study_name(spec: SweepSpec, code_version: str) -> str:
    """``<name>@<hash of spec fingerprint and code version>``."""
    h = hashlib.sha256(f"{spec.fingerprint()}|{code_version}".encode()).hexdigest()[:12]
    return f"{spec.name}@{h}"


def _generations(store: Storage, name: str) -> list[tuple[str, dict]]:
    out = [(s.study_name, dict(s.user_attrs)) for s in store.studies()
           if s.user_attrs.get("sweep") == name and "spec_fingerprint" in s.user_attrs]
    return sorted(out, key=lambda g: int(g[1].get("generation") or 0))


def resolve(spec: SweepSpec, store: Storage, code_version: str, *, create: bool, new_generation: bool = False,
            allow_code_change: bool = False) -> Generation:
    """The generation this command works on (see the module docstring for the rules).

    Args:
        create: A command that may start a generation (``sweep run``); False for ``status``,
            ``export``: they only read (the latest generation of this spec, whatever its code
            version), and a sweep never run is ``BadInput``.

    Raises:
        BadInput: Never run (read-only commands), or the spec or code changed without a flag.
    """
    fp = spec.fingerprint()
    name = study_name(spec, code_version)
    gens = _generations(store, spec.name)
    for study, attrs in gens:
        if study == name:
            return Generation(study, int(attrs.get("generation") or 1), fp, code_version, True)
    latest = gens[-1] if gens else None
    if latest is None and _legacy(store, spec.name):
        # Started by a version of this tool that keyed studies by name alone (no fingerprint, no code
        # version in the run keys): continuing it keeps its keys, so its finished runs are kept.
        if allow_code_change or not create:
            return Generation(spec.name, 0, fp, None, True)
        if not new_generation:
            raise BadInput(f"sweep {spec.name}: started before spec fingerprints and code versions were recorded; "
                           "pass --allow-code-change to continue it (finished runs kept) or --new-generation to "
                           "run every point again")
        return Generation(name, 1, fp, code_version, False)
    if latest is None:
        if not create:
            raise BadInput(f"sweep {spec.name}: never run in {store.shown}; "
                           f"run `scaling sweep run {spec.source or 'SPEC'}` first (or check --dir / --storage)")
        return Generation(name, 1, fp, code_version, False)
    study, attrs = latest
    same_spec = attrs.get("spec_fingerprint") == fp
    if same_spec and (allow_code_change or not create):  # reading a table is no reuse: each row names its code
        return Generation(study, int(attrs.get("generation") or 1), fp, str(attrs.get("code_version")), True)
    if new_generation and create:
        return Generation(name, int(attrs.get("generation") or 1) + 1, fp, code_version, False)
    n = int(attrs.get("generation") or 1)
    if same_spec:
        raise BadInput(f"sweep {spec.name}: generation {n} was run by code {attrs.get('code_version')}, this is "
                       f"{code_version}; pass --allow-code-change to continue it (finished runs kept, each row records "
                       "its code version) or --new-generation to run every point again")
    changes = describe_changes(attrs.get("spec") or {}, spec.canonical())
    raise BadInput(f"sweep {spec.name}: the spec changed since generation {n} ({changes}); pass --new-generation to "
                   f"plan it as generation {n + 1} (its table and fit use its own points), or give it another name")


def record(store_study, spec: SweepSpec, gen: Generation) -> None:
    """Write a new generation's identity into its study's user attrs (what :func:`resolve` reads)."""
    attrs = store_study.user_attrs
    if "spec_fingerprint" in attrs or gen.code_version is None:  # recorded already, or a legacy study
        return
    for k, v in (("sweep", spec.name), ("spec", spec.canonical()), ("code_version", gen.code_version),
                 ("generation", gen.number), ("created", time.time()), ("spec_fingerprint", gen.spec_fingerprint)):
        store_study.set_user_attr(k, v)  # spec_fingerprint last: _generations lists complete records only


def point(r: PlannedRun, gen: Generation) -> dict:
    """A planned run as a point of ``gen``'s queue (`sweeps.store.Queue.enqueue`): its run key, its
    params (shown by optuna-dashboard) and its attrs (what the worker runs and the table reports)."""
    attrs = {
        "config": r.config, "phase": r.phase, "size": r.size, "n_params": r.n_params, "samples": r.samples,
        "seed": r.seed, "flops": r.flops, "flops_per_sample": r.flops_per_sample, "budget": r.budget,
        "depends_on": r.depends_on, "est_seconds": r.est_seconds,
        "spec_fingerprint": gen.spec_fingerprint, "code_version": gen.code_version, "generation": gen.number,
    }
    if r.branch is not None:
        attrs["branch"] = r.branch
    if r.validation is not None:
        attrs.update(r.validation)
    if r.precision is not None:
        attrs["precision"] = r.precision
    if r.family is not None:
        attrs["family"] = r.family
    if r.group is not None:
        attrs["group"] = r.group
    params = {"run_key": r.key, "size": str(r.size), "samples": r.samples, "seed": r.seed, "phase": r.phase}
    return {"run_key": r.key, "params": params, "attrs": attrs}
