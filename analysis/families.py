"""Several model families in one results table: each fitted on its own, and which one scales better.

A table whose ``family`` column holds more than one family is never fitted as one law
(`analysis.table.load_table` refuses it). `fit_by_family` fits each family's rows with `analysis.fit`
(the bootstrap over that family's runs included: `analysis.bootstrap`), each family with its own
bootstrap seed, so the resamples of one family are independent of the other's. The difference of an
exponent between two families is then read off those refits, pairing the i-th refit of one family
with the i-th of the other: independent draws, so the pairs are draws of the difference's bootstrap
distribution. Its 95% percentile interval, and a two-sided bootstrap p-value
(2 x the smaller share of differences on either side of 0), say whether the families differ beyond
the noise of the runs. A larger exponent is a law whose loss falls faster with that variable: the
family that "scales better" in it, over the range of the runs.

The comparison is ``families.json`` (contract `vla_core.schema.FAMILIES`); each family's fit is a
fit.json of its own, ``fit_<family>.json`` beside it, which `scaling optimal` and `predict` read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.bootstrap import percentile_ci
from analysis.options import FitOptions, resolve
from analysis.result import FitResult
from analysis.table import FAMILY_COLUMN, families_in, family_column, read_frame
from vla_core.atomic import write_atomic
from vla_core.errors import BadInput
from vla_core.schema import DEFAULT_FAMILY

FORMAT_VERSION = 1
LEVEL = 0.95
"""Coverage of the difference's interval."""
_VARIABLE = {"alpha": "N", "alpha_N": "N", "beta": "D", "alpha_D": "D"}
"""The variable each two-variable law's exponent belongs to (its loss term's A / N^alpha or B / D^beta)."""


def file_slug(name: str) -> str:
    """A family name as part of a file name (``my_mod:make`` -> ``my_mod_make``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def fit_file(name: str) -> str:
    """The file name of one family's fit, beside the comparison: ``fit_<family>.json``."""
    return f"fit_{file_slug(name)}.json"


def reference_family(names) -> str:
    """The family the others are compared against: the built-in vla when present, else the first by name."""
    names = list(names)
    return DEFAULT_FAMILY if DEFAULT_FAMILY in names else sorted(names)[0]


def exponent_names(form: str) -> list[str]:
    """The exponents of a law form (its parameters of kind "exponent", e.g. alpha and beta)."""
    from analysis.forms import get_form

    f = get_form(form)
    return [n for n, k in zip(f.params, f.kinds) if k == "exponent"]


def variable_of(form: str, name: str) -> str | None:
    """The variable (N, D or C) an exponent of `form` scales the loss with, None when the form does not say."""
    from analysis.forms import get_form

    cols = get_form(form).columns
    return cols[0] if len(cols) == 1 else _VARIABLE.get(name)


def exponent_difference(ref: FitResult, other: FitResult, name: str, level: float = LEVEL) -> dict:
    """``other``'s exponent `name` minus ``ref``'s: the value, its percentile interval and a two-sided
    bootstrap p-value, from the refits each fit's bootstrap made.

    Returns:
        {"value", "ci" ([lo, hi] or None without a bootstrap), "p_value" (None likewise), "n" (pairs of
        refits), "determined" (False when either fit has the exponent at an edge of its domain: the runs
        do not determine it, nor its difference), "beyond_noise" (the interval excludes 0)}.
    """
    value = float(other.params[name] - ref.params[name])
    a, b = (f.bootstrap.column(name) if f.bootstrap is not None else None for f in (ref, other))
    determined = name not in (ref.at_bound or {}) and name not in (other.at_bound or {})
    out = {"value": value, "ci": None, "p_value": None, "n": 0, "determined": determined, "beyond_noise": False}
    if a is None or b is None or min(a.size, b.size) == 0:
        return out
    m = min(a.size, b.size)
    d = b[:m] - a[:m]  # independent resamples (each family its own seed): pairs by index are product draws
    lo, hi = percentile_ci(d[:, None], level)
    p = min(1.0, 2.0 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))
    out.update(ci=[float(lo[0]), float(hi[0])], p_value=p, n=int(m),
               beyond_noise=bool(determined and (lo[0] > 0 or hi[0] < 0)))
    return out


def _p_text(p: float | None, n: int) -> str:
    if p is None:
        return "p not computed"
    return f"p < {2 / n:.2g}" if p == 0 else f"p = {p:.2g}"


def _range_text(fits: dict[str, FitResult]) -> str:
    """The extent of the runs compared, e.g. "over N 1.5e+04 to 6e+04 and D 2e+04 to 1.6e+05"."""
    parts = []
    for q, key in (("N", "n"), ("D", "d")):
        lo = [f.observed.get(f"{key}_min") for f in fits.values() if f.observed.get(f"{key}_min") is not None]
        hi = [f.observed.get(f"{key}_max") for f in fits.values() if f.observed.get(f"{key}_max") is not None]
        if lo and hi:
            parts.append(f"{q} {min(lo):.2g} to {max(hi):.2g}")
    return ("over " + " and ".join(parts)) if parts else "over the runs studied"


def _clause(ref: str, other: str, name: str, var: str | None, vr: float, vo: float, diff: dict,
            level: float = LEVEL) -> str:
    """One exponent's comparison in words."""
    ci, p = diff["ci"], _p_text(diff["p_value"], diff["n"])
    what = f"with {var}" if var else f"in {name}"
    if ci is None:
        return f"{name} is {vo:.3g} for {other} against {vr:.3g} for {ref}, not tested (no bootstrap refits)"
    if not diff["determined"]:
        return (f"{name} ({vo:.3g} for {other}, {vr:.3g} for {ref}) lies at an edge of its domain in one fit, so the "
                "runs determine neither it nor the difference: no verdict")
    stats = f"{other} - {ref} = {diff['value']:+.3g}, {100 * level:.0f}% interval [{ci[0]:+.3g}, {ci[1]:+.3g}]"
    if diff["beyond_noise"]:
        win, lose = (other, ref) if diff["value"] > 0 else (ref, other)
        vw, vl = (vo, vr) if win == other else (vr, vo)
        return (f"{win}'s loss falls faster {what} ({name} {vw:.3g} against {vl:.3g} for {lose}; "
                f"{stats}, {p}: beyond the noise)")
    return (f"{what} the two are within the noise of each other ({name} {vo:.3g} for {other}, {vr:.3g} for {ref}; "
            f"{stats} covers 0, {p})")


def compare(fits: dict[str, FitResult], reference: str | None = None, *, source: str = "",
            level: float = LEVEL) -> dict:
    """The comparison of families fitted on their own (``families.json``): each exponent of every family
    against the reference family's, and a one-sentence verdict per family compared.

    Args:
        fits: each family's fit (one form).
        reference: the family the others are compared against (default: `reference_family`).
        source: the table the fits came from.
        level: coverage of the differences' intervals.
    """
    if not fits:
        raise BadInput("no family to compare: the table has no fitted runs")
    forms = {f.form for f in fits.values()}
    if len(forms) > 1:
        raise BadInput(f"the families were fitted with different law forms ({', '.join(sorted(forms))}); compare one")
    form = forms.pop()
    ref = reference or reference_family(fits)
    names = exponent_names(form)
    fams = {}
    for name, f in fits.items():
        fams[name] = {"n_points": f.n_points, "params": dict(f.params),
                      "ci": {k: f.ci[k] for k in f.params if k in f.ci}, "observed": dict(f.observed or {}),
                      "seed": f.bootstrap.seed if f.bootstrap is not None else None, "warnings": list(f.warnings)}
    diffs, verdicts, warnings = [], [], []
    for other in (n for n in fits if n != ref):
        clauses, winners, determined = [], set(), 0
        for e in names:
            d = exponent_difference(fits[ref], fits[other], e, level)
            var = variable_of(form, e)
            vr, vo = float(fits[ref].params[e]), float(fits[other].params[e])
            better = None
            if d["beyond_noise"]:
                better = other if d["value"] > 0 else ref
                winners.add(better)
            determined += bool(d["determined"] and d["ci"] is not None)
            if not d["determined"]:
                who = [n for n in (ref, other) if e in (fits[n].at_bound or {})]
                warnings.append(f"{e} of {', '.join(who)} lies at an edge of its domain: the runs do not determine it, "
                                f"so its difference between {other} and {ref} has no verdict")
            diffs.append({"exponent": e, "variable": var, "family": other, "reference": ref, "family_value": vo,
                          "reference_value": vr, "better": better, **d})
            clauses.append(_clause(ref, other, e, var, vr, vo, d, level))
        span = _range_text({ref: fits[ref], other: fits[other]})
        if len(winners) == 1:
            head = f"{winners.pop()} scales better {span}"
        elif winners:
            head = f"Neither {other} nor {ref} scales better in every variable {span}"
        elif determined:
            head = f"Within the noise, neither {other} nor {ref} scales better {span}"
        else:
            head = f"No verdict on {other} against {ref} {span}"
        verdicts.append(head + ": " + "; ".join(clauses) + ".")
    if len(fits) == 1:
        verdicts.append(f"Only family {ref} has runs to fit: nothing to compare.")
    return {"format_version": FORMAT_VERSION, "form": form, "source": source, "reference": ref, "level": level,
            "families": fams, "differences": diffs, "verdict": " ".join(verdicts), "warnings": warnings}


@dataclass(frozen=True)
class FamilyFits:
    """Each family of a table fitted on its own rows, and their comparison (`compare`)."""

    fits: dict[str, FitResult]
    """The fit of each family, the reference family first."""
    comparison: dict = field(default_factory=dict)
    """``families.json``: the exponents' differences, their intervals and p-values, the verdict."""

    def save(self, path) -> Path:
        """Write the comparison to `path` and each family's fit beside it as ``fit_<family>.json``
        (atomically, each checked against its contract); returns `path`."""
        from vla_core.schema import validate

        path = Path(path)
        doc = json.loads(json.dumps(self.comparison))
        for name, f in self.fits.items():
            f.save(path.parent / fit_file(name))
            doc["families"][name]["fit"] = fit_file(name)
        doc = _clean(doc)
        validate("families", doc)
        return write_atomic(path, json.dumps(doc, indent=1) + "\n")

    def summary(self) -> str:
        """Readable text: each family's fit, then the exponents compared and the verdict."""
        c = self.comparison
        lines = []
        for name, f in self.fits.items():
            lines.append(f"family {name}:")
            lines += ["  " + ln for ln in f.summary().splitlines()]
        lines.append(f"which family scales better (each against {c['reference']}; {100 * c['level']:.0f}% bootstrap "
                     "intervals of the difference, runs resampled within each family):")
        for d in c["differences"]:
            ci = d["ci"]
            shown = f"[{ci[0]:+.3g}, {ci[1]:+.3g}]" if ci else "(no bootstrap)"
            lines.append(f"  {d['exponent']:>6}: {d['family']} {d['family_value']:.4g}, {d['reference']} "
                         f"{d['reference_value']:.4g}; difference {d['value']:+.4g} {shown}, "
                         f"{_p_text(d['p_value'], d['n'])}"
                         + ("" if not d["determined"] else "  beyond the noise" if d["beyond_noise"] else
                            "  within the noise"))
        lines.append(f"  verdict: {c['verdict']}")
        lines += [f"  WARNING: {w}" for w in c["warnings"]]
        return "\n".join(lines)


def _clean(v):
    """NaN and infinities as null (plain JSON)."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def fit_by_family(table, form: str | None = None, *, family_col: str = FAMILY_COLUMN, source: str | None = None,
                  options: FitOptions | None = None, **overrides) -> FamilyFits:
    """Fit each model family of a results table on its own rows, and compare their exponents.

    Args:
        table: DataFrame or CSV / Parquet path with a `family_col` column (blind rows are each family's own).
        form: the law every family is fitted with (None: the options').
        family_col: the column of each run's family.
        source: how to name the table in the fits and messages (default: its path).
        options, overrides: how to fit, as in `analysis.fit`. Its `seed` is the reference family's bootstrap
            seed; the i-th other family's is seed + i, so each family's resamples are independent of the others'.

    Raises:
        BadInput: no family column, or what `analysis.fit` raises for a family (named in the message).
    """
    from analysis.workflow import fit

    o = resolve(options, form=form, **overrides)
    frame, name = read_frame(table)
    src = source or name
    if family_col not in frame.columns:
        raise BadInput(f"{src}: no column {family_col!r}: fitting by family needs each run's family")
    fam = family_column(frame, family_col)
    present = families_in(frame, family_col)
    ref = reference_family(present)
    order = [ref] + [n for n in present if n != ref]
    fits: dict[str, FitResult] = {}
    for i, fname in enumerate(order):
        part = frame[fam == fname].reset_index(drop=True)
        try:
            res = fit(part, options=o.replace(seed=o.seed + i))
        except BadInput as exc:
            msg = str(exc).splitlines()[0]
            msg = msg[len("DataFrame: "):] if msg.startswith("DataFrame: ") else msg
            raise BadInput(f"{src}: family {fname}: {msg}") from None
        note = f"the rows of family {fname} only ({len(part)} of {len(frame)}): each family is fitted on its own"
        fits[fname] = dataclasses.replace(res, source=f"{src} (family {fname})", notes=[note, *res.notes])
    return FamilyFits(fits, compare(fits, ref, source=src, level=o.level))


__all__ = ["FORMAT_VERSION", "FamilyFits", "compare", "exponent_difference", "exponent_names", "file_slug",
           "fit_by_family", "fit_file", "reference_family", "variable_of"]
