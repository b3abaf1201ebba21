"""Law forms in the parameterisation the fitter works in, with their analytic Jacobians.

Each form writes log L as a log-sum-exp of linear terms in its parameters (Chinchilla Approach 3,
Hoffmann et al. 2022 appendix D.2): positive scales are fitted as logs (E = exp(e), A = exp(a), ...),
which keeps them positive and the loss surface well scaled. A form maps a batch of parameter
vectors `theta` (S, P) and the data's log columns (n,) to log predictions (S, n) and the
derivatives of those predictions with respect to each parameter.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

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
            from vla_core.errors import BadInput

            with_alloc = ", ".join(n for n, f in FORMS.items() if f.allocate is not None)
            raise BadInput(f"form {self.name!r}: compute-optimal allocation needs a law in both N and D ({with_alloc})")
        return self.allocate(params, np.asarray(flops, float) / k)

    def loss_at(self, params: dict, n, d):
        """Predicted loss at N = n parameters trained on D = d fresh samples (no repetition: U = D)."""
        return self.predict(params, {"N": np.asarray(n, float), "D": np.asarray(d, float), "U": np.asarray(d, float)})

    def reduce_grid(self, grid: np.ndarray) -> np.ndarray:
        """A start grid of the registered form in this form's fit space (the same grid here)."""
        return np.asarray(grid, float)

    @property
    def floor(self) -> str | None:
        """Name of the floor parameter (kind "floor", E), or None when the law has none."""
        return next((n for n, k in zip(self.params, self.kinds) if k == "floor"), None)


@dataclass(frozen=True)
class Restricted(Form):
    """A registered form with some parameters held at values and its floor bounded from below.

    The fitter sees only the free parameters: `params`, `log_params`, `kinds` and `grid` are the
    free ones', in the registered form's order, and `log_predict` inserts the held values before
    calling the registered form's, dropping their derivative columns. With `floor_min`, the floor is
    fitted as E = floor_min + exp(e) (so E >= floor_min), its derivative taken by the chain rule.
    `to_natural` gives every parameter of the registered form, held ones included (arrays of the
    held value for a batch), so exponents, allocation and predictions work as for the registered form.
    Build one with `restrict`.
    """

    base: Form | None = field(default=None, repr=False)
    """The registered form."""
    fixed: dict = field(default_factory=dict)
    """Held parameters, {name: natural value}."""
    floor_min: float | None = None
    """Lower bound of the floor parameter, when it is free and bounded."""

    def _free(self) -> list[int]:
        return [i for i, n in enumerate(self.base.params) if n not in self.fixed]

    def to_natural(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        theta = np.asarray(theta, float)
        free = dict(zip(self.params, range(len(self.params))))
        out = {}
        for name, lg in zip(self.base.params, self.base.log_params):
            if name in self.fixed:
                out[name] = np.full(theta.shape[:-1], float(self.fixed[name]))
                continue
            t = theta[..., free[name]]
            if name == self.floor and self.floor_min is not None:
                out[name] = self.floor_min + np.exp(t)
            else:
                out[name] = np.exp(t) if lg else t
        return out

    def from_natural(self, params: dict[str, float]) -> np.ndarray:
        out = []
        for name, lg in zip(self.params, self.log_params):
            v = float(params[name])
            if name == self.floor and self.floor_min is not None:
                v -= self.floor_min
            out.append(np.log(max(v, 1e-300)) if lg else v)
        return np.array(out, float)

    def reduce_grid(self, grid: np.ndarray) -> np.ndarray:
        # The registered grid's floor column (log E) becomes the log of E's excess over floor_min;
        # the held parameters' columns go, and the starts that then coincide are kept once.
        return np.unique(np.asarray(grid, float)[:, self._free()], axis=0)


def restrict(form: Form, fixed: dict[str, float] | None = None, floor_min: float | None = None) -> Form:
    """`form` with the parameters in `fixed` held at their (natural) values and its floor kept >= `floor_min`.

    Returns `form` itself when nothing is held or bounded. The caller checks names and values
    (`analysis.workflow` does); a held floor makes `floor_min` moot.
    """
    fixed = {k: float(v) for k, v in (fixed or {}).items()}
    if isinstance(form, Restricted):  # restricting again adds to what is already held
        fixed = {**form.fixed, **fixed}
        floor_min = form.floor_min if floor_min is None else floor_min
        form = form.base
    if form.floor is None or form.floor in fixed:
        floor_min = None
    if not fixed and floor_min is None:
        return form
    base = form
    P = len(base.params)
    free = [i for i, n in enumerate(base.params) if n not in fixed]
    pos = {i: j for j, i in enumerate(free)}  # registered index -> free index
    held = [(i, np.log(max(fixed[n], 1e-300)) if lg else fixed[n])
            for i, (n, lg) in enumerate(zip(base.params, base.log_params)) if n in fixed]
    fi = base.params.index(base.floor) if floor_min is not None else None  # registered index of the floor

    def log_predict(theta, lg):
        full = np.empty((theta.shape[0], P), theta.dtype)
        full[:, free] = theta
        for i, v in held:
            full[:, i] = v
        if fi is not None:
            excess = np.exp(theta[:, pos[fi]:pos[fi] + 1])
            E = floor_min + excess
            full[:, fi] = np.log(E[:, 0])
            dlogE = excess / E  # d log E / d e, (S, 1)
        pred, groups = base.log_predict(full, lg)
        out = []
        for coef, F, idx in groups:
            keep = [j for j, i in enumerate(idx) if i in pos]
            if fi is not None and fi in idx:
                j = idx.index(fi)
                out.append((coef * dlogE, F[:, j:j + 1], (pos[fi],)))
                keep.remove(j)
            if keep:
                out.append((coef, F if len(keep) == len(idx) else F[:, keep], tuple(pos[idx[j]] for j in keep)))
        return pred, out

    def predict(p, cols):
        return base.predict({**p, **fixed}, cols)

    r = Restricted(base.name, tuple(base.params[i] for i in free), base.columns,
                   tuple(base.log_params[i] for i in free), np.empty((0, len(free))), log_predict, predict,
                   tuple(base.kinds[i] for i in free), base.optimal_exponents, base.allocate,
                   base=base, fixed=fixed, floor_min=None if floor_min is None else float(floor_min))
    return dataclasses.replace(r, grid=r.reduce_grid(base.grid))


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
    return out, (_groups([p0, p1, p2], lg) + [(p1, lg["1N"][:, 1:], (3,))]
                 + _groups([-p2 * ldp, -p2 * beta * dldp], lg, 4))


def _dc_predict(p, cols):
    return laws.data_constrained(cols["N"], cols["D"], cols["U"], p["E"], p["A"], p["B"],
                                 p["alpha"], p["beta"], p["r_star"])


_MAX_LOG_EXCESS = 80.0
"""Cap on log(N / U_N): past it exp(-R_N / R_N*) is 0 for any plausible R_N*, so the law is unchanged,
and R_N = N / U_N - 1 stays finite in float32 (whose exp overflows near 88)."""


def _dcf_log(theta, lg):
    # The full law of Muennighoff et al. 2023 (`laws.data_constrained_full`): effective data D' as in
    # _dc_log, and effective parameters N' = U_N (1 + R_N* (1 - exp(-R_N / R_N*))) with
    # U_N = min(N_opt(U_D), N), log N_opt(U_D) = (log(alpha / beta) + a - b + beta log U_D) / alpha.
    # Derivatives are analytic: where N > N_opt, log N' moves with log N_opt, hence with a, b, alpha, beta.
    e, a, b, alpha, beta, sn, sd = (theta[:, i:i + 1] for i in range(7))
    rn, rd = np.exp(sn), np.exp(sd)  # R_N*, R_D*, (S, 1)
    lud = np.minimum(lg["U"], lg["D"])  # log U_D: a run cannot have seen more unique samples than samples
    R = lg["R"]
    dec = np.exp(-R / rd)
    dpu = 1.0 + rd * (1.0 - dec)
    ldp = lud + np.log(dpu)  # log D'
    dldp = (rd * (1.0 - dec) - R * dec) / dpu  # d log D' / d log R_D*
    lno = (np.log(alpha / beta) + a - b + beta * lud) / alpha  # log N_opt(U_D), (S, n)
    excess = lg["N"] > lno
    lun = np.where(excess, lno, lg["N"])  # log U_N
    RN = np.expm1(np.minimum(lg["N"] - lun, _MAX_LOG_EXCESS))  # R_N, 0 where N <= N_opt
    decn = np.exp(-RN / rn)
    npu = 1.0 + rn * (1.0 - decn)
    lnp = lun + np.log(npu)  # log N'
    dlnp_sn = (rn * (1.0 - decn) - RN * decn) / npu  # d log N' / d log R_N*
    # d log N' / d log N_opt: 1 - (R_N + 1) exp(-R_N / R_N*) / (N' / U_N) where N > N_opt, else 0 (it
    # is 0 at N = N_opt from both sides, so the objective stays smooth across the switch).
    g = np.where(excess, 1.0 - decn * (RN + 1.0) / npu, 0.0)
    u1 = a - alpha * lnp
    u2 = b - beta * ldp
    out, (p0, p1, p2) = _lse([np.broadcast_to(e, u1.shape), u1, u2])
    pg = p1 * g
    return out, _groups([p0, p1 - pg, p2 + pg, -p1 * lnp - pg * (1.0 / alpha - lno),
                         -p2 * ldp - pg * (lud - 1.0 / beta), -p1 * alpha * dlnp_sn, -p2 * beta * dldp], lg)


def _dcf_predict(p, cols):
    return laws.data_constrained_full(cols["N"], cols["D"], cols["U"], p["E"], p["A"], p["B"], p["alpha"],
                                      p["beta"], p["r_n_star"], p["r_d_star"])


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
    # Fresh data (U = D) leaves D' = D, and Chinchilla's optimum has N = N_opt(D) exactly, so N' = N
    # there; since N' <= N and D' <= D everywhere, no other split does better: the allocation is Chinchilla's.
    "data_constrained_full": Form(
        "data_constrained_full", ("E", "A", "B", "alpha", "beta", "r_n_star", "r_d_star"), ("N", "D", "U"),
        (True, True, True, False, False, True, True),
        # Exponents start above 0: log N_opt divides by alpha and takes log(alpha / beta).
        _grid([-1.0, 0.0, 1.0], [0.0, 10.0, 20.0], [0.0, 10.0, 20.0], [0.2, 0.5, 1.0], [0.2, 0.5, 1.0],
              [np.log(1.0), np.log(5.0), np.log(25.0)], [np.log(5.0), np.log(15.0), np.log(50.0)]),
        _dcf_log, _dcf_predict, (*_CHIN_KINDS, "count", "count"), _chinchilla_exponents, _chinchilla_allocate),
}


def get_form(name: str) -> Form:
    """The registered form called `name`; raises BadInput listing the known ones."""
    from vla_core.errors import BadInput

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
