"""Close the loop: predict a recommendation and its alternatives first, then run them.

`scaling sweep validate SPEC --fit FIT --flops C` asks the fit for the compute-optimal N at a budget
C (ideally several times the design's largest run), builds the models the family would build for
N_opt and for alternatives at the same compute (N_opt x each factor), predicts each one's loss at
D = C / its own FLOPs per sample, and appends all of it to the spec as a validation round. Only
then are the runs made (`scaling sweep run SPEC`); each becomes a row with ``phase = validation``
carrying the prediction. The spec is written before any run, so its history shows that the
prediction came first.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

from vla_core.atomic import write_atomic
from vla_core.errors import BadInput

HEADER = ("# Validation rounds: written by `scaling sweep validate` before their runs (the predictions come first);\n"
          "# never by hand. `scaling sweep run` trains them as rows with phase = validation.\n")


def _shape(size: float, dims, spec) -> str:
    """The size that names the model the spec's family builds for a target parameter count (for vla its
    WIDTHxBLOCKS shape, so the solver of another day cannot change it; for a factory family the count)."""
    from sweeps.points import model_of

    return model_of(spec, size, dims).size_name


def plan_round(sweep, fit_path: str, flops: float, factors=(0.25, 4.0), seeds=(0,)) -> dict:
    """The validation round for budget `flops`: recommended size and alternatives, each predicted.

    Args:
        sweep: a `sweeps.sweep.Sweep` (its spec, and its folder for the data's dimensions).
        fit_path: the fit whose answer is tested.
        flops: the held-out budget C (FLOPs per run).
        factors: alternatives at N_opt x factor (same compute, so their D shrinks or grows).
        seeds: seeds each point runs with.

    Raises:
        BadInput: a factor that builds the same model as another, or a budget too small for a model.
    """
    from sweeps.data_source import data_dims
    from sweeps.plan import resolve_models

    if sweep.spec.families:
        raise BadInput(f"{sweep.spec.source or 'spec'}: trains several families (families:); validate one family's "
                       "fit (fit_<family>.json) from a spec of that family alone (train.family)")
    if not (math.isfinite(flops) and flops > 0):
        raise BadInput(f"--flops {flops}: a positive number of FLOPs")
    if any(not (f > 0) or f == 1 for f in factors):
        raise BadInput(f"--factors {','.join(map(str, factors))}: "
                       "positive numbers other than 1 (N_opt itself is always run)")
    from analysis.approaches import load_any_fit, optimal_any, predict_any

    spec = sweep.spec
    fit = load_any_fit(fit_path)
    opt = optimal_any(fit, flops)
    dims = data_dims(sweep.local_data())
    targets = [(1.0, opt["n_opt"])] + [(f, opt["n_opt"] * f) for f in factors]
    shapes = [(f, _shape(t, dims, spec)) for f, t in targets]
    seen: dict[str, float] = {}
    for f, sh in shapes:
        if sh in seen:
            raise BadInput(f"--factors: N_opt x {f:g} and N_opt x {seen[sh]:g} build the same model ({sh}); "
                           "choose factors further apart")
        seen[sh] = f
    models = {str(m.size): m for m in resolve_models(replace(spec, models=tuple(sh for _, sh in shapes)), dims)}
    points = []
    for f, sh in shapes:
        m = models[sh]
        d = int(flops // m.flops_per_sample)
        if d < 1:
            raise BadInput(f"--flops {flops:.3g}: below one sample of {sh} ({m.flops_per_sample} FLOPs per sample)")
        pr = predict_any(fit, m.n_params, d, flops)
        lo, hi = (pr["ci"].get("loss") or [pr["loss"], pr["loss"]])
        points.append({"size": sh, "n_params": int(m.n_params), "samples": d, "predicted_loss": round(pr["loss"], 5),
                       "predicted_lo": round(lo, 5), "predicted_hi": round(hi, 5), "recommended": f == 1.0,
                       "factor": f, "extrapolation": pr.get("extrapolation"), "warnings": pr.get("warnings", [])})
    return {"budget": float(flops), "fit": str(fit_path), "seeds": list(seeds), "points": points, "optimal": opt}


def _round_yaml(r: dict) -> str:
    lines = [f"- budget: {r['budget']:.6g}", f"  fit: {r['fit']}", f"  seeds: [{', '.join(map(str, r['seeds']))}]",
             "  points:"]
    for p in r["points"]:
        lines.append(f"  - {{size: {p['size']}, n_params: {p['n_params']}, samples: {p['samples']}, "
                     f"predicted_loss: {p['predicted_loss']}, predicted_lo: {p['predicted_lo']}, "
                     f"predicted_hi: {p['predicted_hi']}, recommended: {'true' if p['recommended'] else 'false'}}}")
    return "\n".join(lines) + "\n"


def _existing_round(rnd) -> dict:
    return {"budget": rnd.budget, "fit": rnd.fit, "seeds": list(rnd.seeds),
            "points": [{"size": p.size, "n_params": p.n_params, "samples": p.samples,
                        "predicted_loss": p.predicted_loss, "predicted_lo": p.predicted_lo,
                        "predicted_hi": p.predicted_hi, "recommended": p.recommended}
                       for p in rnd.points]}


def append_round(spec_path: str | Path, spec, rnd: dict) -> Path:
    """Write the spec again with `rnd` added to its validation rounds (atomically; the rest kept as written).

    The validation block is always the last thing in the file; a spec with other top-level keys after
    it is refused rather than rewritten.
    """
    path = Path(spec_path)
    text = path.read_text()
    m = re.search(r"^validation:", text, flags=re.M)
    if m:
        tail = text[m.end():].splitlines()
        if any(line and not line[0].isspace() and not line.startswith(("-", "#")) for line in tail):
            raise BadInput(f"{path}: its validation block is not the last key of the file; move it there first")
        cut = text.rfind(HEADER, 0, m.start())
        text = text[: cut if cut >= 0 else m.start()]
    body = "".join(_round_yaml(_existing_round(r)) for r in spec.validation) + _round_yaml(rnd)
    text = text.rstrip("\n") + "\n" + HEADER + "validation:\n" + body
    return write_atomic(path, text)
