"""Next-run design: which (N, D) runs most shrink the uncertainty of N_opt at a target compute, per FLOP.

The fit's uncertainty is summarised by the Fisher information of its log predictions,
I = sum_i J_i^T J_i / sigma^2 (J_i = d log L_hat_i / d theta, the form's analytic Jacobian; sigma^2 the
residual variance), so that Var(g) ~ grad g^T I^-1 grad g for the quantity we care about,
g = log N_opt(C_target) (the delta method: c-optimal design, Chaloner & Verdinelli 1995). A new run
at (N, D) adds J_x^T J_x / sigma^2 to I before it is run, since J depends only on where the run is.
Runs are chosen greedily within the budget, by drop in Var(g) per FLOP and by drop alone, and the
better of the two sets is kept (the standard approximation for budgeted maximisation). Candidates are
the model sizes the family can build (`sizes`) times log-spaced data sizes between the cheapest
observed run and the budget.
"""

from __future__ import annotations

import numpy as np

from analysis.covariance import log_jacobian
from analysis.forms import Form, log_columns
from vla_core.errors import BadInput


def _jacobian(form: Form, theta: np.ndarray, cols: dict) -> np.ndarray:
    """d log L_hat / d theta for every row, (n, P)."""
    return log_jacobian(form, theta, log_columns(cols))


def _target_grad(form: Form, theta: np.ndarray, flops: float, k: float, h: float = 1e-5) -> np.ndarray:
    """Gradient of log N_opt(flops) with respect to the fit-space parameters, by central differences."""
    def g(t):
        n, _ = form.allocation(form.to_natural(t), flops, k)
        return float(np.log(n))

    out = np.zeros(theta.size)
    for j in range(theta.size):
        e = np.zeros(theta.size)
        e[j] = h
        out[j] = (g(theta + e) - g(theta - e)) / (2 * h)
    return out


def candidates(sizes, flops_lo: float, flops_hi: float, k: float, per_size: int = 12) -> np.ndarray:
    """(m, 2) candidate (N, D): every size with D log-spaced so that k N D spans [flops_lo, flops_hi]."""
    out = []
    for n in np.unique(np.asarray(sizes, float)):
        d_lo, d_hi = flops_lo / (k * n), flops_hi / (k * n)
        if d_hi < 1:
            continue
        for d in np.unique(np.round(np.logspace(np.log10(max(d_lo, 1.0)), np.log10(d_hi), per_size))):
            out.append((n, d))
    return np.array(out, float).reshape(-1, 2)


def suggest(fit, table, target_flops: float, budget_flops: float, count: int, sizes=None,
            per_size: int = 12) -> dict:
    """The next `count` runs to buy, total cost <= `budget_flops`, that most shrink Var(log N_opt) per FLOP.

    Args:
        fit: a `FitResult` of a law with a compute-optimal allocation, fitted on `table`.
        table: the checked `analysis.table.Table` the fit used (its N, D rows give the current information).
        target_flops: the compute C whose N_opt matters. budget_flops: FLOPs the new runs may cost in total.
        count: how many runs to propose (fewer when the budget runs out).
        sizes: parameter counts the model family can build (default: the table's sizes, extended up
            and down by its own geometric step to cover N_opt(target)).

    Returns:
        {"runs": [{"n_params", "n_samples", "flops", "sd_after"}], "sd_before": sd of log N_opt now,
         "sd_after": after all proposed runs, "spent": FLOPs, "target_flops", "n_opt"}.
    """
    from analysis.forms import get_form

    form = get_form(fit.form)
    if not form.has_allocation:
        raise BadInput(f"form {fit.form!r}: suggest needs a law in N and D with a compute-optimal allocation")
    if not (target_flops > 0 and budget_flops > 0 and count >= 1):
        raise BadInput("--target-flops and --budget-flops must be positive and --count at least 1")
    theta = form.from_natural(fit.params)
    cols = {q: table.cols[q] for q in form.columns}
    J = _jacobian(form, theta, cols)
    resid = np.log(form.predict(fit.params, cols)) - np.log(table.loss)
    sigma2 = max(float(np.mean(resid**2)), 1e-8)
    info = J.T @ J / sigma2
    ridge = 1e-9 * max(np.trace(info), 1.0) * np.eye(theta.size)  # flat directions (E -> 0) stay finite
    grad = _target_grad(form, theta, target_flops, fit.k)
    n_opt = float(form.allocation(fit.params, target_flops, fit.k)[0])

    def var(information):
        return float(grad @ np.linalg.solve(information + ridge, grad))

    if sizes is None:
        sizes = default_sizes(table.cols["N"], n_opt)
    cand = candidates(sizes, float(table.compute.min()), min(budget_flops, target_flops), fit.k, per_size)
    if cand.size == 0:
        raise BadInput("no candidate run fits the budget: raise --budget-flops or give smaller --sizes")
    cost = fit.k * cand[:, 0] * cand[:, 1]
    Jc = _jacobian(form, theta, {"N": cand[:, 0], "D": cand[:, 1], "U": cand[:, 1]})
    v0 = var(info)
    steps = {kind: _greedy(kind, info, Jc, cost, sigma2, var, budget_flops, count) for kind in ("ratio", "gain")}
    kind = min(steps, key=lambda k: steps[k][1])
    picks, v_end = steps[kind]
    runs, spent = [], 0.0
    for i, sd in picks:
        spent += cost[i]
        runs.append({"n_params": int(round(cand[i, 0])), "n_samples": int(cand[i, 1]), "flops": float(cost[i]),
                     "sd_after": float(sd)})
    return {"runs": runs, "sd_before": float(np.sqrt(v0)), "sd_after": float(np.sqrt(v_end)), "spent": float(spent),
            "target_flops": float(target_flops), "n_opt": n_opt, "rule": kind}


def _greedy(kind, info, Jc, cost, sigma2, var, budget, count):
    """Greedy picks by drop in Var(g) per FLOP ("ratio") or by drop alone ("gain"), within the budget.

    Budgeted maximisation takes the better of the two (Khuller, Moss & Naor 1999): per-FLOP greed alone
    fills the count with the cheapest runs and leaves the budget unspent; gain greed alone buys one
    large run. The "gain" rule keeps the cheapest run's cost in reserve for every slot still open.
    """
    picks, spent, used = [], 0.0, np.zeros(len(cost), bool)
    cheapest = float(cost.min())
    for slot in range(count):
        reserve = (count - slot - 1) * cheapest if kind == "gain" else 0.0
        ok = ~used & (spent + cost + reserve <= budget)
        if not ok.any():
            break
        cur = var(info)
        score = np.full(len(cost), -np.inf)
        for i in np.flatnonzero(ok):
            drop = cur - var(info + np.outer(Jc[i], Jc[i]) / sigma2)
            score[i] = drop / cost[i] if kind == "ratio" else drop
        i = int(np.argmax(score))
        info = info + np.outer(Jc[i], Jc[i]) / sigma2
        used[i], spent = True, spent + cost[i]
        picks.append((i, np.sqrt(var(info))))
    return picks, var(info)


def default_sizes(observed_n, n_opt: float) -> np.ndarray:
    """The table's model sizes, extended by their own geometric step to reach 3x N_opt and a third of the smallest."""
    n = np.unique(np.asarray(observed_n, float))
    step = float(np.exp(np.median(np.diff(np.log(n))))) if n.size > 1 else 2.0
    step = min(max(step, 1.25), 4.0)
    lo, hi = min(n.min(), n_opt) / 3.0, max(n.max(), n_opt) * 3.0
    down = n.min() / step ** np.arange(1, 60)
    up = n.max() * step ** np.arange(1, 60)
    return np.concatenate([down[down >= lo], n, up[up <= hi]])
