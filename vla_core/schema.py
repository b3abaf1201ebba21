"""The seams' contracts, written once: run result, results table, fit result, compute-optimal choice.

Each contract is a tuple of `Field`s. From them come

- the JSON Schema of each file (`json_schema`), for anyone's validator;
- our own check (`validate`, `validate_table`), used by the code that writes the files
  (`RunResult.save`, `write_table`, `FitResult.save`, `optimal`) and by the tests;
- the field tables of docs/contracts.md (`render_markdown`): ``python -m vla_core.schema --write
  docs/contracts.md`` rewrites them, ``--check`` fails when the page is out of date (a test runs it).

Plain Python, no torch and no jsonschema at run time, so that it is importable anywhere and
`scaling`, `sweeps` and `analysis` all read it (docs/architecture.md: vla_core imports none of them).
Changing a contract: edit the fields here, run ``--write``, bump the file's format version when an
existing reader would misread it, and change every writer and reader in the same commit.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Field:
    """One field of a contract (a JSON key, or a column of the results table)."""

    name: str
    """The key or column name."""
    type: str
    """JSON type of its value: string | integer | number | boolean | object | array."""
    doc: str
    """What it holds, units stated."""
    nullable: bool = False
    """May be null (JSON null; an empty cell in the table)."""
    required: bool = True
    """Must be present (older writers may omit an optional field)."""
    enum: tuple = ()
    """The allowed values, when it is a choice."""
    minimum: float | None = None
    """Smallest allowed number."""
    maximum: float | None = None
    """Largest allowed number."""
    items: str | None = None
    """For arrays: the JSON type of the items ("number|null" allows null items)."""
    values: str | None = None
    """For objects with free keys: the JSON type of every value ("number|null" allows null)."""
    completed: bool = False
    """Results table only: never empty on a row whose state is completed (what a fit needs)."""


def _f(name, type_, doc, **kw) -> Field:
    return Field(name, type_, doc, **kw)


RUN_STATUSES = ("completed", "diverged", "failed")
TABLE_STATES = ("completed", "failed", "diverged", "pruned", "running", "waiting")
TABLE_PHASES = ("main", "stable", "cooldown", "lr_search", "blind", "validation")
FITTED_PHASES = ("main", "cooldown")
"""The phases whose rows are design points: the only rows a scaling-law fit of a sweep's table uses."""
MODEL_COLUMNS = ("d_model", "n_layers", "n_heads")
DEFAULT_FAMILY = "vla"
"""The model family of a row whose table has no `family` column (written before it existed: the built-in
family was the only one)."""
RELIANCE_INPUTS = ("image", "instruction", "proprio")
"""The inputs of result.json's `input_reliance`, each a `reliance_<input>` column of the table."""
"""The keys of result.json's `model` that the results table carries as columns."""

RUN_RESULT: tuple[Field, ...] = (
    _f("run_id", "string", "Run identifier (the run folder's name unless configured)."),
    _f("status", "string", "How the run ended.", enum=RUN_STATUSES),
    _f("n_params", "integer", "Total trainable parameters.", minimum=0),
    _f("n_params_nonembed", "integer", "Parameters excluding embeddings: the N of the scaling fits.", minimum=0),
    _f("model", "object", "Model shape: d_model, n_layers, n_heads, d_ff, patch_size, head, chunk, ..."),
    _f("flops_per_sample", "integer", "Training FLOPs per sample (forward + backward, attention included).",
       minimum=0),
    _f("flops", "number", "Training FLOPs spent: flops_per_sample x n_samples.", minimum=0),
    _f("n_samples", "integer", "D: training samples (frames) seen.", minimum=0),
    _f("n_unique_samples", "integer", "Distinct training frames among them.", minimum=0),
    _f("epochs", "number", "n_samples / unique training frames available (> 1: repeated data).", minimum=0),
    _f("lr", "number", "Peak learning rate.", minimum=0),
    _f("global_batch_size", "integer", "Samples per optimizer step.", minimum=1),
    _f("precision", "string", "Lightning precision: bf16-mixed | 16-mixed | 32-true."),
    _f("world_size", "integer", "Processes (devices x nodes) that trained.", minimum=1),
    _f("val_loss", "number", "Final held-out loss: action-token NLL in nats per action dimension (discrete "
       "head), else the head's loss. The loss the fits use.", nullable=True),
    _f("val_loss_best", "number", "Lowest validation loss seen during the run (same units).", nullable=True),
    _f("train_loss", "number", "Mean training loss over the last logged steps (same units).", nullable=True),
    _f("action_mse", "number", "Validation MSE of predicted actions, raw action units squared.", nullable=True,
       minimum=0),
    _f("success_rate", "number", "Closed-loop success over the evaluation episodes; null when not evaluated.",
       nullable=True, minimum=0, maximum=1),
    _f("wall_seconds", "number", "Wall-clock seconds of the whole run.", minimum=0),
    _f("samples_per_second", "number", "Training throughput, all devices (samples/s).", nullable=True, minimum=0),
    _f("mfu", "number", "Model FLOP utilisation: flops_per_sample x samples/s / (peak_flops x world_size); null "
       "where the peak is unknown.",
       nullable=True, minimum=0),
    _f("versions", "object", "Software that made the run: torch, lightning, python, package (and the code "
       "version, `code`, where known)."),
    _f("success_note", "string", "Why success_rate is null (e.g. data without a simulator); null when measured.",
       nullable=True, required=False),
    _f("blind", "boolean", "Whether the images and instruction were withheld (the input-free baseline).",
       required=False),
    _f("input_reliance", "object", "Validation-loss increase (nats) with each input (image, instruction, "
       "proprio) shuffled across samples: how much the policy uses it; 0 = ignored. Null when not measured.",
       nullable=True, required=False, values="number|null"),
    _f("peak_flops", "number", "Peak FLOP/s of one device that `mfu` divides by: the fastest dtype the device "
       "offers (docs/throughput.md); null where unknown.", nullable=True, required=False, minimum=0),
    _f("peak_flops_source", "string", "Where peak_flops comes from: vendor table, measured probe, config.",
       nullable=True, required=False),
    _f("peak_flops_load", "number", "A measured (CPU) peak: the 1-minute load average per core before its probe; "
       "a probe under load is used by its run only, never cached (docs/throughput.md). Null for other peaks.",
       nullable=True, required=False, minimum=0),
    _f("peak_flops_age_s", "number", "A measured (CPU) peak: seconds between its probe and the result. Null for "
       "other peaks.", nullable=True, required=False, minimum=0),
    _f("success_per_task", "object", "success_rate per task family ({family: rate}); null when not measured.",
       nullable=True, required=False, values="number"),
    _f("loss_floor", "number", "The dataset's loss floor (its manifest.json): the lowest val_loss the discrete "
       "head can reach given the expert's own action noise (nats per action dimension); null when unknown.",
       nullable=True, required=False, minimum=0),
    _f("seed", "integer", "The run's seed (its initialisation and data order); in the results table it is the "
       "sweep's own seed column.", nullable=True, required=False, minimum=0),
)

_MODEL_COLUMNS: tuple[Field, ...] = (
    _f("d_model", "integer", "Model width (from result.json's model).", nullable=True),
    _f("n_layers", "integer", "Transformer blocks (from result.json's model).", nullable=True),
    _f("n_heads", "integer", "Attention heads (from result.json's model).", nullable=True),
)
# In the table every run-result field is a column, empty until the run has finished; a completed row
# always carries what a fit and an allocation need.
_NEEDED_WHEN_COMPLETED = {"run_id", "status", "n_params", "flops_per_sample", "flops", "n_samples", "val_loss"}


def _as_column(f: Field) -> tuple[Field, ...]:
    if f.name == "seed":  # the sweep's column (SWEEP_COLUMNS), the same value
        return ()
    if f.name == "model":
        return _MODEL_COLUMNS
    if f.name == "input_reliance":  # one column per probed input
        return tuple(Field(f"reliance_{x}", "number", f"input_reliance.{x} (nats).", nullable=True, required=False)
                     for x in RELIANCE_INPUTS)
    if f.type == "object":  # any other nested value: one JSON-string column, as `flatten_result` writes it
        return (Field(f.name, "string", f"result.json's {f.name} as a JSON string.", nullable=True,
                      required=f.required),)
    return (Field(f.name, f.type, f.doc, nullable=True, required=f.required, enum=f.enum, minimum=f.minimum,
                  maximum=f.maximum, completed=f.name in _NEEDED_WHEN_COMPLETED),)


RESULT_COLUMNS: tuple[Field, ...] = tuple(c for f in RUN_RESULT for c in _as_column(f))
"""The run-result part of the results table, in column order."""
SWEEP_COLUMNS: tuple[Field, ...] = (
    _f("sweep", "string", "Sweep name."),
    _f("run_key", "string", "Stable key of the point, from its resolved config; `sweep run SPEC --only KEY` "
       "re-runs it."),
    _f("seed", "integer", "Training seed.", nullable=True),
    _f("state", "string", "The point's state in the sweep (running and waiting only before the sweep ends).",
       enum=TABLE_STATES),
    _f("phase", "string", "main: a design point; stable / cooldown: WSD branching; lr_search: a learning-rate "
       "trial; blind: the input-free baseline (never fitted); validation: a recommended configuration or an "
       "alternative run at a held-out budget after the fit, its prediction made first (never fitted).",
       enum=TABLE_PHASES),
    _f("size", "string", "The model size as the spec wrote it (preset name, target parameters or WIDTHxBLOCKS "
       "shape).", nullable=True),
    _f("family", "string", "The run's model family: vla (the built-in transformer), conv, or MODULE:ATTR. A "
       "table without this column is all vla; fits never pool two families (`scaling fit --by family`).",
       required=False),
    _f("budget", "number", "IsoFLOP design: the compute budget C (FLOPs) that planned the point.", nullable=True),
    _f("reason", "string", "Why a point failed or was pruned.", nullable=True),
    _f("attempts", "integer", "Times the point was started.", nullable=True),
    _f("spec_fingerprint", "string", "Fingerprint of the spec that planned the point.", nullable=True,
       required=False),
    _f("generation", "integer", "Which generation of the spec (one per fingerprint and code version) holds "
       "the point.", nullable=True, required=False, minimum=0),
    _f("code_version", "string", "Version of the code that made the run.", nullable=True, required=False),
    _f("reused_from", "string", "The committed results table the row was taken from (the spec's `reuse:`, as it "
       "writes the path) instead of being trained; empty for a row the sweep trained.", nullable=True,
       required=False),
    _f("flops_6nd", "number", "6 x non-embedding N x D (Kaplan's estimate), beside the exact flops.", nullable=True,
       required=False),
    _f("predicted_loss", "number", "phase validation: the loss the tool predicted for this configuration before "
       "it ran (`scaling sweep validate`).", nullable=True, required=False),
    _f("predicted_lo", "number", "phase validation: lower end of the printed 95% interval.", nullable=True,
       required=False),
    _f("predicted_hi", "number", "phase validation: upper end of the printed 95% interval.", nullable=True,
       required=False),
    _f("recommended", "boolean", "phase validation: true for the compute-optimal size the tool recommended, false "
       "for an alternative at the same compute.", nullable=True, required=False),
)
"""The sweep's own columns, after the run-result ones."""
RESULTS_TABLE: tuple[Field, ...] = RESULT_COLUMNS + SWEEP_COLUMNS

FIT_RESULT: tuple[Field, ...] = (
    _f("form", "string", "Law form: chinchilla, kaplan, power_n, power_d, power_c, data_constrained, ..."),
    _f("params", "object", "Best-fit parameters by the form's own names (E, A, B, alpha, beta for Chinchilla).",
       values="number"),
    _f("ci", "object", "95% bootstrap intervals {name: [lo, hi]} of every parameter and derived quantity "
       "(empty without bootstrap; null for an open end).", values="array"),
    _f("exponents", "object", "Compute-optimal exponents: N_opt ~ C^a, D_opt ~ C^b (null for one-variable forms).",
       values="number|null"),
    _f("huber", "number", "Summed robust objective (Huber on log residuals) at the optimum.", nullable=True),
    _f("n_points", "integer", "Runs fitted.", minimum=0),
    _f("backtest", "object", "Refit without the top-compute runs: holdout (runs), are_mean, are_max (relative "
       "errors predicting them); where held-out runs repeat a configuration (seeds), also points, "
       "point_are_mean, point_are_max (errors against each configuration's mean loss) and seed_spread "
       "(mean relative deviation of the runs from their configuration's mean)."),
    _f("warnings", "array", "What a reader must know before trusting the numbers.", items="string"),
    _f("notes", "array", "What was done on the way (rows dropped, columns used).", items="string",
       required=False),
    _f("columns", "object", "Results-table column used for each quantity (N, D, C, loss).", values="string",
       required=False),
    _f("k", "number", "FLOPs per parameter per sample that turn compute into N x D.", minimum=0, required=False),
    _f("k_measured", "boolean", "Whether k was measured from the table's FLOPs column.", required=False),
    _f("bootstrap", "object", "n (resamples), seed, names, samples (rows of natural parameters), level (the "
       "intervals' coverage).", required=False),
    _f("optimum", "object", "The compute-optimal choice at the largest compute of the table (as `optimal`).",
       required=False),
    _f("source", "string", "Where the table came from.", required=False),
    _f("at_bound", "object", "Parameters at an edge of their domain ({name: lower|upper}).", values="string",
       required=False),
    _f("convergence", "object", "converged, iterations, grad_max of the fit; bootstrap refits at their cap.",
       required=False),
    _f("observed", "object", "The range fitted: loss_min, flops_max, n_max, d_max, blind_loss.", required=False),
    _f("training", "object", "Training settings of the fitted runs (lr, global_batch_size, ...).", required=False),
    _f("success", "object", "Success-rate laws when the table has success rates: column, floor, vs_compute, "
       "vs_loss; empty otherwise.", required=False),
    _f("approaches", "object", "Approaches 1 (envelope), 2 (IsoFLOP parabolas, windowed) and 3 (this fit) on the "
       "same runs: approaches {1, 2, 3: a, ci, assumptions_met, why}, agree, warnings, trust.", required=False),
    _f("fixed", "object", "Parameters held at a value instead of fitted ({name: value}; also in params, "
       "intervals [value, value]).", values="number", required=False),
    _f("e_min", "number", "Lower bound the floor E was fitted above (E = e_min + exp(e)); null: unbounded.",
       nullable=True, required=False),
    _f("loss_floor", "number", "Known lower bound on the loss (the table's loss_floor column, or given); "
       "null when unknown.", nullable=True, required=False),
    _f("stderr", "object", "Standard error of each parameter and exponent from the curvature of the objective at "
       "the optimum (analysis.covariance); null for a held parameter, one at an edge of its domain, or when the "
       "covariance was not computed.", values="number|null", required=False),
    _f("covariance", "object", "Covariance of the free parameters at the optimum: names, matrix (natural units; "
       "null when not computed), method, why (null when computed), at_edge (parameters left out, held).",
       required=False),
    _f("format_version", "integer", "fit.json format version.", enum=(1,)),
)

OPTIMAL: tuple[Field, ...] = (
    _f("flops", "number", "The compute budget C (FLOPs).", minimum=0),
    _f("n_opt", "number", "Compute-optimal parameters N_opt(C).", minimum=0),
    _f("d_opt", "number", "Compute-optimal training samples D_opt(C) = C / (k N_opt).", minimum=0),
    _f("loss", "number", "The law's loss at (N_opt, D_opt).", nullable=True),
    _f("k", "number", "FLOPs per parameter per sample used.", minimum=0),
    _f("form", "string", "Law form of the fit."),
    _f("ci", "object", "95% intervals {n_opt, d_opt, loss: [lo, hi]}: bootstrap percentiles, the loss's widened "
       "to what the backtest achieves at this distance and to the spread between seeds (see ci_method).",
       values="array"),
    _f("ci_bootstrap", "object", "The bootstrap's own interval of the loss, before widening.", required=False),
    _f("ci_method", "string", "How the loss interval was set (which floor bound it).", required=False),
    _f("flops_per_sample", "number", "What a model of N_opt parameters costs per sample (c0 + c1 N fitted over "
       "the runs, else k N): the budget is met with it, D_opt = C / flops_per_sample.", minimum=0, required=False),
    _f("extrapolation", "object", "How far the answer lies outside the fitted runs: N, D, C (answer / largest "
       "fitted value above the range, smallest / answer below it, 1 inside), sides {N, D, C: above | below | "
       "inside}, unique_samples and epochs (D_opt / the unique samples of the runs' data) where known, "
       "log10_max (the largest factor, decades)."),
    _f("warnings", "array", "What a reader must know before using the answer.", items="string", required=False),
)

FAMILIES: tuple[Field, ...] = (
    _f("form", "string", "Law form every family was fitted with."),
    _f("source", "string", "The results table the families came from."),
    _f("reference", "string", "The family the others are compared against (vla when present)."),
    _f("level", "number", "Coverage of the differences' intervals (0.95).", minimum=0, maximum=1),
    _f("families", "object", "Per family: fit (its fit.json, `fit_<family>.json` beside this file), n_points, "
       "params, ci (their 95% intervals), observed (the range fitted), seed (its bootstrap seed: each family's "
       "own, so their resamples are independent), warnings.", values="object"),
    _f("differences", "array", "Per exponent and family against the reference: exponent, variable (N, D or C), "
       "family, reference, family_value, reference_value, value (family - reference), ci (percentile interval of "
       "the paired bootstrap refits' differences; null without a bootstrap), p_value (two-sided: 2 x the smaller "
       "share of differences on either side of 0), n (pairs), determined (false when an exponent is at an edge "
       "of its domain), beyond_noise (the interval excludes 0), better (the family whose loss falls faster, "
       "null within the noise).", items="object"),
    _f("verdict", "string", "One sentence per family compared: which scales better over the runs' range, and "
       "whether the difference is beyond the noise."),
    _f("warnings", "array", "What a reader must know before trusting the comparison.", items="string"),
    _f("format_version", "integer", "families.json format version.", enum=(1,)),
)

CONTRACTS: dict[str, tuple[tuple[Field, ...], str]] = {
    "run_result": (RUN_RESULT, "Run result: `RUN_DIR/result.json` (scaling.result.RunResult)"),
    "results_table": (RESULTS_TABLE, "Results table: a sweep's `results.csv` / `.parquet`, one row per point "
                      "(sweeps.results)"),
    "fit": (FIT_RESULT, "Fit result: `fit.json` (analysis.result.FitResult)"),
    "optimal": (OPTIMAL, "Compute-optimal choice: `scaling optimal --json` (analysis.allocation.optimal)"),
    "families": (FAMILIES, "Family comparison: `families.json` of `scaling fit --by family` and a `families:` "
                 "sweep (analysis.families)"),
}


def fields(name: str) -> tuple[Field, ...]:
    """The fields of contract `name` (run_result | results_table | fit | optimal | families)."""
    return CONTRACTS[name][0]


def field_names(name: str) -> list[str]:
    """The field names of contract `name`, in order."""
    return [f.name for f in fields(name)]


# -- JSON Schema ---------------------------------------------------------------------------------------

def _type(spec: str, nullable: bool = False) -> list[str] | str:
    types = spec.split("|") + (["null"] if nullable else [])
    return types if len(types) > 1 else types[0]


def _field_schema(f: Field) -> dict:
    s: dict[str, Any] = {"type": _type(f.type, f.nullable), "description": f.doc}
    if f.enum:
        s["enum"] = list(f.enum) + ([None] if f.nullable else [])
    if f.minimum is not None:
        s["minimum"] = f.minimum
    if f.maximum is not None:
        s["maximum"] = f.maximum
    if f.items:
        s["items"] = {"type": _type(f.items)}
    if f.values:
        s["additionalProperties"] = {"type": _type(f.values)}
    return s


def json_schema(name: str) -> dict:
    """JSON Schema (draft 2020-12) of one JSON document (run_result, fit, optimal) or one table row."""
    fs, title = CONTRACTS[name]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": {f.name: _field_schema(f) for f in fs},
        "required": [f.name for f in fs if f.required],
    }


# -- our own check (the subset of JSON Schema above) ---------------------------------------------------

def _is(value: Any, type_: str) -> bool:
    if type_ == "null":
        return value is None
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "boolean":
        return isinstance(value, bool)
    if type_ == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if type_ == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_ == "object":
        return isinstance(value, dict)
    if type_ == "array":
        return isinstance(value, list)
    raise ValueError(f"unknown JSON type {type_!r}")


def _any(value: Any, spec: str, nullable: bool = False) -> bool:
    return any(_is(value, t) for t in spec.split("|") + (["null"] if nullable else []))


def field_problems(f: Field, value: Any) -> list[str]:
    """What is wrong with `value` as field `f` (empty when nothing)."""
    if value is None:
        return [] if f.nullable else [f"{f.name} is null"]
    if not _any(value, f.type):
        return [f"{f.name} must be {f.type}, found {type(value).__name__} {value!r:.40}"]
    out = []
    if f.enum and value not in f.enum:
        out.append(f"{f.name} is {value!r}, not one of {', '.join(map(str, f.enum))}")
    if f.minimum is not None and value < f.minimum:
        out.append(f"{f.name} is {value!r}, below {f.minimum}")
    if f.maximum is not None and value > f.maximum:
        out.append(f"{f.name} is {value!r}, above {f.maximum}")
    if f.items:
        out += [f"{f.name}[{i}] must be {f.items}" for i, v in enumerate(value) if not _any(v, f.items)][:1]
    if f.values:
        out += [f"{f.name}.{k} must be {f.values}" for k, v in value.items() if not _any(v, f.values)][:1]
    return out


def problems(name: str, doc: Any) -> list[str]:
    """Every way `doc` breaks contract `name` (empty when it conforms). Unknown keys are allowed."""
    if not isinstance(doc, dict):
        return [f"expected a JSON object, found {type(doc).__name__}"]
    out = []
    for f in fields(name):
        if f.name not in doc:
            if f.required:
                out.append(f"missing {f.name}")
            continue
        out += field_problems(f, doc[f.name])
    return out


class ContractError(ValueError):
    """A document or table does not conform to its contract (a bug in its writer, or a foreign file)."""


def validate(name: str, doc: Any) -> None:
    """Raise `ContractError` (one line naming the first problems) when `doc` breaks contract `name`."""
    found = problems(name, doc)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise ContractError(f"{CONTRACTS[name][1].split(':')[0]} breaks its contract: {'; '.join(found[:3])}{more}")


def table_problems(df) -> list[str]:
    """Every way a results table (pandas DataFrame, as written or as read back from CSV) breaks its contract."""
    out = []
    cols = set(df.columns)
    completed = [s == "completed" for s in df["state"].tolist()] if "state" in cols else [False] * len(df)
    for f in RESULTS_TABLE:
        if f.name not in cols:
            if f.required:
                out.append(f"missing column {f.name}")
            continue
        for i, (v, done) in enumerate(zip(df[f.name].tolist(), completed)):
            v = _plain(v)
            if v is None and f.completed and done:
                out.append(f"row {i}: {f.name} is empty on a completed row")
            elif v is None and not f.nullable:
                out.append(f"row {i}: {f.name} is null")
            elif v is not None:
                out += [f"row {i}: {p}" for p in field_problems(f, v)]
            if len(out) > 20:
                return out
    return out


def _plain(v: Any) -> Any:
    """A table cell as a JSON value: NaN / None -> None, numpy scalars -> Python."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def validate_table(df) -> None:
    """Raise `ContractError` when the results table `df` breaks its contract."""
    found = table_problems(df)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise ContractError(f"results table breaks its contract: {'; '.join(found[:3])}{more}")


# -- docs/contracts.md ---------------------------------------------------------------------------------

BEGIN = "<!-- BEGIN GENERATED by `python -m vla_core.schema --write docs/contracts.md`: do not edit by hand -->"
END = "<!-- END GENERATED -->"


def _constraint(f: Field, table: bool) -> str:
    bits = []
    if f.enum:
        bits.append(" / ".join(map(str, f.enum)))
    if f.minimum is not None:
        bits.append(f">= {f.minimum:g}")
    if f.maximum is not None:
        bits.append(f"<= {f.maximum:g}")
    if f.items:
        bits.append(f"items: {f.items.replace('|', ' or ')}")
    if f.values:
        bits.append(f"values: {f.values.replace('|', ' or ')}")
    if table and f.completed:
        bits.append("set on completed rows")
    if f.nullable and not table:
        bits.append("null allowed")
    if not f.required:
        bits.append("optional")
    return "; ".join(bits)


def render_markdown() -> str:
    """The generated part of docs/contracts.md: one table of fields per contract."""
    parts = [BEGIN, ""]
    for name, (fs, title) in CONTRACTS.items():
        table = name == "results_table"
        parts.append(f"### {title}")
        parts.append("")
        if table:
            parts.append("Every run-result field is a column (`model` flattened to d_model, n_layers, n_heads; "
                         "empty until the run has finished), then the sweep's own columns.")
            parts.append("")
        parts.append("| field | type | meaning | constraints |")
        parts.append("|---|---|---|---|")
        for f in fs:
            parts.append(f"| `{f.name}` | {f.type.replace('|', ' or ')} | {f.doc.replace('|', '/')} | "
                         f"{_constraint(f, table)} |")
        parts.append("")
    parts.append(END)
    return "\n".join(parts)


def rewrite(text: str) -> str:
    """`text` (docs/contracts.md) with its generated part replaced by `render_markdown()`."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError("docs/contracts.md has no generated part (its BEGIN/END markers are missing)")
    return pattern.sub(lambda _: render_markdown(), text)


def main(argv: list[str] | None = None) -> int:
    """``python -m vla_core.schema --write|--check docs/contracts.md``; ``--json NAME`` prints a JSON Schema."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m vla_core.schema", description=main.__doc__)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", metavar="MD", help="rewrite the generated part of this page")
    g.add_argument("--check", metavar="MD", help="exit 1 when this page's generated part is out of date")
    g.add_argument("--json", metavar="NAME", choices=list(CONTRACTS), help="print the JSON Schema of a contract")
    a = p.parse_args(argv)
    if a.json:
        print(json.dumps(json_schema(a.json), indent=1))
        return 0
    path = Path(a.write or a.check)
    text = path.read_text()
    new = rewrite(text)
    if a.write:
        path.write_text(new)
        return 0
    if new != text:
        print(f"{path} is out of date with vla_core/schema.py: run python -m vla_core.schema --write {path}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
