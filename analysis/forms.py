"""Law forms in the parameterisation the fitter works in, with their analytic Jacobians.

Each form writes log L as a log-sum-exp of linear terms in its parameters (Chinchilla Approach 3,
Hoffmann et al. 2022 appendix D.2): positive scales are fitted as logs (E = exp(e), A = exp(a), ...),
which keeps them positive and the loss surface well scaled. A form maps a batch of parameter
vectors `theta` (S, P) and the data's log columns (n,) to log predictions (S, n) and the
derivatives of those predictions with respect to each parameter.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from analysis import laws

# Derivatives come in groups (coef (S, n), F (n, k), idx): d log L_i / d theta[idx[j]] = coef_i * F_ij.
# Parameters sharing a coefficient (a scale and its exponent) then cost one matrix product in the
# fitter's gradient, not one (S, n) multiply each.


def _groups(derivs: list[np.ndarray], lg: dict, first: int = 0) -> list:
    """Plain (S, n) derivatives of parameters first, first+1, ... as groups."""
    return [(d, lg["1"], (first + k,)) for k, d in enumerate(derivs)]


def _lse(terms: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """log(sum(exp(terms))) and the softmax weights of each term, all (S, n), overflow-safe."""
    m = terms[0]
    for t in terms[1:]:
        m = np.maximum(m, t)
    ex = [np.exp(t - m) for t in terms]
    total = ex[0] + ex[1] if len(ex) == 2 else ex[0] + ex[1] + ex[2]
    inv = 1.0 / total
    return m + np.log(total), [x * inv for x in ex]


def _grid(*axes) -> np.ndarray:
    """Cartesian product of per-parameter start values, (n_starts, P)."""
    return np.array(list(itertools.product(*axes)), dtype=float)


# Chinchilla's initialisation grid (Hoffmann et al. 2022, D.2): 5 * 5 * 5 * 6 * 6 = 4,500 starts.
_EXP = np.arange(0.0, 2.01, 0.5)
_LOG_E = np.arange(-1.0, 1.01, 0.5)
_LOG_AB = np.arange(0.0, 25.01, 5.0)


@dataclass(frozen=True)
class Form:
    """A law form: names, needed columns, start grid, and log prediction with derivatives."""

    name: str
    """Short name used by the CLI and in fit.json (e.g. "chinchilla")."""
    params: tuple[str, ...]
    """Natural parameter names in fit.json order (E, A, B, alpha, beta, ...)."""
    columns: tuple[str, ...]
    """Data columns the form needs, among "N" (parameters), "D" (samples), "C" (FLOPs), "U" (unique samples)."""
    log_params: tuple[bool, ...]
    """For each parameter, whether the fitter works with its log (positive scale) or the value itself."""
    grid: np.ndarray = field(repr=False)
    """Default start grid in fit space, (n_starts, P)."""
    log_predict: Callable = field(repr=False)
    """(theta (S, P), logs from `log_columns`) -> (log L (S, n), derivative groups)."""
    predict: Callable = field(repr=False)
    """(natural params dict, raw columns {col: (n,)}) -> L (n,): the pure law from `analysis.laws`."""
    kinds: tuple[str, ...] = ()
    """Per parameter, what it is, which sets its domain and when it sits at an edge of it:
    "floor" (an additive loss, >= 0: at the edge when below 1e-3 of the smallest observed loss),
    "scale" (a positive multiplier, no edge of its own), "exponent" (in (0, EXPONENT_CAP)) or
    "count" (a positive constant such as R*, no edge of its own)."""
    optimal_exponents: Callable | None = field(default=None, repr=False)
    """(natural params, values or arrays) -> (a, b) of N_opt ~ C^a, D_opt ~ C^b; None: no allocation."""
    allocate: Callable | None = field(default=None, repr=False)
    """(natural params, C / k (FLOPs per unit of N D)) -> (N_opt, D_opt) minimising loss at fixed N D."""

    def to_natural(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Fit-space vector(s) (..., P) to natural parameters {name: value(s)}."""
        theta = np.asarray(theta, float)
        return {n: (np.exp(theta[..., i]) if lg else theta[..., i])
                for i, (n, lg) in enumerate(zip(self.params, self.log_params))}

    def from_natural(self, params: dict[str, float]) -> np.ndarray:
        """Natural parameters to a fit-space vector (P,)."""
        # A scale that underflowed to 0 (E at its bound) maps to a very negative log, not -inf.
        return np.array([np.log(max(float(params[n]), 1e-300)) if lg else params[n]
                         for n, lg in zip(self.params, self.log_params)], float)

    @property
    def has_allocation(self) -> bool:
        """Whether the law is in both N and D, so that a compute-optimal split exists."""
        return self.allocate is not None

    def exponents(self, params: dict) -> dict:
        """{"a", "b"} of N_opt ~ C^a, D_opt ~ C^b (None for one-variable forms); arrays in, arrays out."""
        if self.optimal_exponents is None:
            return {"a": None, "b": None}
        a, b = self.optimal_exponents(params)
        return {"a": _num(a), "b": _num(b)}

    def allocation(self, params: dict, flops, k: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
        """N_opt and D_opt minimising the law's loss at compute C = k N D (vectorised over params and C)."""
        if self.allocate is None:
            from analysis.errors import BadInput

            with_alloc = ", ".join(n for n, f in FORMS.items() if f.allocate is not None)
            raise BadInput(f"form {self.name!r}: compute-optimal allocation needs a law in both N and D ({with_alloc})")
        return self.allocate(params, np.asarray(flops, float) / k)

    def loss_at(self, params: dict, n, d):
        """Predicted loss at N = n parameters trained on D = d fresh samples (no repetition: U = D)."""
        return self.predict(params, {"N": np.asarray(n, float), "D": np.asarray(d, float), "U": np.asarray(d, float)})


EXPONENT_CAP = 3.0
"""Largest exponent a law of these runs can plausibly have; beyond it the fit describes something else."""


def _num(v):
    return float(v) if np.ndim(v) == 0 else np.asarray(v, float)


def _chinchilla_exponents(p):
    # Hoffmann et al. 2022, eq. 4: a = beta / (alpha + beta), b = alpha / (alpha + beta).
    return laws.compute_optimal_exponents(np.asarray(p["alpha"]), np.asarray(p["beta"]))


def _chinchilla_allocate(p, cn):
    # N_opt = G (C/k)^a, D_opt = G^-1 (C/k)^b, G = (alpha A / (beta B))^(1/(alpha+beta)) (eq. 4).
    al, be = np.asarray(p["alpha"]), np.asarray(p["beta"])
    G = (al * np.asarray(p["A"]) / (be * np.asarray(p["B"]))) ** (1.0 / (al + be))
    n = G * cn ** (be / (al + be))
    return n, cn / n


def _kaplan_exponents(p):
    r = np.asarray(p["alpha_N"]) / np.asarray(p["alpha_D"])
    return 1.0 / (r + 1.0), r / (r + 1.0)


def _kaplan_allocate(p, cn):
    # Minimise (N_c/N)^r + D_c k N / C with r = alpha_N/alpha_D: N_opt = (r N_c^r (C/k) / D_c)^(1/(r+1)).
    r = np.asarray(p["alpha_N"]) / np.asarray(p["alpha_D"])
    n = (r * np.asarray(p["N_c"]) ** r * cn / np.asarray(p["D_c"])) ** (1.0 / (r + 1.0))
    return n, cn / n


def _chinchilla_log(theta, lg):
    # L = E + exp(u1) + exp(u2) evaluated directly (two exps, one log: this is the fitter's hot
    # loop); an overflow gives inf, which the line search rejects like any non-finite step.
    e, a, b, alpha, beta = (theta[:, i:i + 1] for i in range(5))  # each (S, 1)
    E = np.exp(e)
    t1 = np.exp(a - alpha * lg["N"])  # A / N^alpha, (S, n)
    t2 = np.exp(b - beta * lg["D"])  # B / D^beta
    tot = t1 + t2
    tot += E
    inv = 1.0 / tot
    t1 *= inv  # share of each term in L = d log L / d (its log scale)
    t2 *= inv
    inv *= E
    return np.log(tot), [(inv, lg["1"], (0,)), (t1, lg["1N"], (1, 3)), (t2, lg["1D"], (2, 4))]


def _chinchilla_predict(p, cols):
    return laws.chinchilla(cols["N"], cols["D"], p["E"], p["A"], p["B"], p["alpha"], p["beta"])


def _kaplan_log(theta, lg):
    # log L = alpha_D * LSE(r (lNc - lN), lDc - lD) with r = alpha_N / alpha_D.
    lnc, ldc, an, ad = (theta[:, i:i + 1] for i in range(4))
    r = an / ad
    u1 = r * (lnc - lg["N"])
    u2 = ldc - lg["D"]
    s, (p1, p2) = _lse([u1, u2])
    return ad * s, _groups([an * p1, ad * p2, p1 * (lnc - lg["N"]), s - p1 * u1], lg)


def _kaplan_predict(p, cols):
    return laws.kaplan(cols["N"], cols["D"], p["N_c"], p["D_c"], p["alpha_N"], p["alpha_D"])


def _power_log(col):
    def log_predict(theta, lg):
        e, a, alpha = (theta[:, i:i + 1] for i in range(3))
        u = a - alpha * lg[col]
        out, (p0, p1) = _lse([np.broadcast_to(e, u.shape), u])
        return out, [(p0, lg["1"], (0,)), (p1, lg["1" + col], (1, 2))]

    def predict(p, cols):
        return laws.power_law(cols[col], p["E"], p["A"], p["alpha"])

    return log_predict, predict


def _dc_log(theta, lg):
    # Chinchilla with D replaced by the effective data D'(D, U, R*) of Muennighoff et al. 2023.
    e, a, b, alpha, beta, s = (theta[:, i:i + 1] for i in range(6))
    rs = np.exp(s)  # R*, (S, 1)
    R = lg["R"]  # repetitions beyond the first epoch, (n,)
    decay = np.exp(-R / rs)  # (S, n)
    dprime_over_u = 1.0 + rs * (1.0 - decay)
    ldp = lg["U"] + np.log(dprime_over_u)  # log D'
    # d log D' / d log R* = R* * (1 - decay - (R / R*) decay) / (D' / U)
    dldp = (rs * (1.0 - decay) - R * decay) / dprime_over_u
    u1 = a - alpha * lg["N"]
    u2 = b - beta * ldp
    out, (p0, p1, p2) = _lse([np.broadcast_to(e, u1.shape), u1, u2])
    return out, _groups([p0, p1, p2], lg) + [(p1, lg["1N"][:, 1:], (3,))] + _groups([-p2 * ldp, -p2 * beta * dldp], lg, 4)


def _dc_predict(p, cols):
    return laws.data_constrained(cols["N"], cols["D"], cols["U"], p["E"], p["A"], p["B"],
                                 p["alpha"], p["beta"], p["r_star"])


_pn, _pn_pred = _power_log("N")
_pd, _pd_pred = _power_log("D")
_pc, _pc_pred = _power_log("C")
_POWER_GRID = _grid(_LOG_E, _LOG_AB, _EXP)

_POWER_KINDS = ("floor", "scale", "exponent")
_CHIN_KINDS = ("floor", "scale", "scale", "exponent", "exponent")

# The registry: a new law is one entry here (its math lives in its own functions above).
FORMS: dict[str, Form] = {
    "chinchilla": Form("chinchilla", ("E", "A", "B", "alpha", "beta"), ("N", "D"),
                       (True, True, True, False, False),
                       _grid(_LOG_E, _LOG_AB, _LOG_AB, _EXP, _EXP), _chinchilla_log, _chinchilla_predict,
                       _CHIN_KINDS, _chinchilla_exponents, _chinchilla_allocate),
    "kaplan": Form("kaplan", ("N_c", "D_c", "alpha_N", "alpha_D"), ("N", "D"), (True, True, False, False),
                   _grid([10.0, 20.0, 30.0, 40.0], [10.0, 20.0, 30.0, 40.0], [0.05, 0.1, 0.3, 0.6],
                         [0.05, 0.1, 0.3, 0.6]), _kaplan_log, _kaplan_predict,
                   ("scale", "scale", "exponent", "exponent"), _kaplan_exponents, _kaplan_allocate),
    "power_n": Form("power_n", ("E", "A", "alpha"), ("N",), (True, True, False), _POWER_GRID, _pn, _pn_pred,
                    _POWER_KINDS),
    "power_d": Form("power_d", ("E", "A", "alpha"), ("D",), (True, True, False), _POWER_GRID, _pd, _pd_pred,
                    _POWER_KINDS),
    "power_c": Form("power_c", ("E", "A", "alpha"), ("C",), (True, True, False), _POWER_GRID, _pc, _pc_pred,
                    _POWER_KINDS),
    "data_constrained": Form(
        "data_constrained", ("E", "A", "B", "alpha", "beta", "r_star"), ("N", "D", "U"),
        (True, True, True, False, False, True),
        _grid([-1.0, 0.0, 1.0], [0.0, 10.0, 20.0], [0.0, 10.0, 20.0], [0.0, 0.5, 1.0], [0.0, 0.5, 1.0],
              [np.log(5.0), np.log(15.0), np.log(50.0)]), _dc_log, _dc_predict,
        (*_CHIN_KINDS, "count"), _chinchilla_exponents, _chinchilla_allocate),  # fresh data: U = D, D' = D
}


def get_form(name: str) -> Form:
    """The registered form called `name`; raises BadInput listing the known ones."""
    from analysis.errors import BadInput

    if name not in FORMS:
        raise BadInput(f"--form {name!r}: unknown form; choose one of {', '.join(FORMS)}")
    return FORMS[name]


def log_columns(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The log columns (and repetitions R for the data-constrained form) a form reads, each (n,)."""
    lg = {k: np.log(np.asarray(v, float)) for k, v in cols.items()}
    ones = np.ones((len(next(iter(lg.values()))), 1))
    lg["1"] = ones
    for k in list(cols):
        lg["1" + k] = np.hstack([ones, -lg[k][:, None]])  # features of (log scale, exponent) pairs
    if "U" in cols:
        lg["R"] = np.maximum(np.asarray(cols["D"], float) / np.asarray(cols["U"], float) - 1.0, 0.0)
    return lg
