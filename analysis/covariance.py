"""Standard errors and covariance of fitted parameters, from the curvature of each fit's objective at its optimum.

What lmfit reports beside a fit: each parameter's standard error and the covariance matrix of the
fitted parameters, the local (asymptotic) uncertainty of the optimum. The fit's own intervals stay
the bootstrap's (`analysis.bootstrap`); these are what the curvature says.

Least squares (the success law, `analysis.success`): cov = s^2 (J^T J)^-1, J the Jacobian of the
residuals, s^2 = sum r_i^2 / (n - p) the residual variance: lmfit's `leastsq` with its default
`scale_covar`, and scipy's `curve_fit` without `absolute_sigma`.

Robust law fit (the summed Huber loss of log residuals, `analysis.fitting.Objective`): lmfit's
scalar minimisers take 2 H^-1 of chi^2 scaled by the reduced chi^2, which for the objective
sum r_i^2 / 2 is s^2 H^-1. For an M-estimator (objective sum rho(r_i), psi = rho', here
psi(r) = side(r) clip(r, -delta, delta), side = 2 tau above the curve's runs, 2 (1 - tau) below) the
residual variance is Huber's estimate (Huber 1981, Robust Statistics, section 7.6):

    cov = K [sum psi(r_i)^2 / (n - p)] / m  H^-1,   m = mean psi'(r_i),   K = 1 + (p / n) Var(psi') / m^2

with H the Hessian of the objective at the optimum: J^T diag(psi'(r)) J (psi' = side inside delta,
0 outside it) plus sum_i psi(r_i) d^2 r_i / d theta^2, the law's own curvature, by central
differences of its analytic Jacobian. With every residual inside delta (least squares) m = 1,
K = 1 and cov = s^2 H^-1, lmfit's. The covariance is computed in the fitter's parameters (logs of
the scales) and carried to the natural ones by the delta method. It is not computed (None, with the
reason) when fewer runs than parameters plus one were fitted, no residual lies within delta, or H
is not positive definite (a flat direction: a parameter the runs do not determine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from analysis.forms import Form

HUBER_METHOD = ("Huber M-estimator: K [sum psi(r)^2 / (n - p)] / mean psi'(r) x H^-1, H the Hessian of the summed "
                "Huber objective at the optimum (Huber 1981, section 7.6); natural parameters by the delta method")
LSQ_METHOD = "least squares: s^2 (J^T J)^-1, s^2 = sum r^2 / (n - p) (lmfit leastsq, scale_covar)"


@dataclass(frozen=True)
class Covariance:
    """Covariance of the fitted (free) parameters at the optimum, in their natural units."""

    names: list[str]
    """The parameters the rows and columns belong to, in order (held parameters are not among them)."""
    matrix: list[list[float]] | None
    """Covariance matrix (len(names) x len(names)); None when it could not be computed (see `why`)."""
    method: str
    """How it was computed."""
    why: str | None = None
    """Why it was not computed; None when it was."""
    at_edge: list[str] | None = None
    """Free parameters left out of `names` because they sit at an edge of their domain (the runs do not
    determine them; the flat direction would leave nothing to invert): the others' covariance holds them
    at their values. None when none was left out."""

    def stderr(self) -> dict[str, float | None]:
        """Standard error of each parameter (sqrt of the diagonal), None for all when not computed."""
        if self.matrix is None:
            return {n: None for n in self.names}
        d = np.diag(np.asarray(self.matrix, float))
        return {n: float(np.sqrt(v)) if v >= 0 else None for n, v in zip(self.names, d)}

    @classmethod
    def from_dict(cls, d) -> Covariance | None:
        """From its JSON object; None for an empty or absent one."""
        if not d:
            return None
        return cls(list(d["names"]), d.get("matrix"), str(d.get("method", "")), d.get("why"), d.get("at_edge"))


def log_jacobian(form: Form, theta: np.ndarray, logs: dict) -> np.ndarray:
    """d log L_hat_i / d theta_j at one fit-space point: (n, P), from the form's analytic derivatives."""
    theta = np.asarray(theta, float)
    pred, groups = form.log_predict(theta[None, :], logs)
    J = np.zeros((pred.shape[1], theta.size))
    for coef, F, idx in groups:
        J[:, list(idx)] = coef[0][:, None] * F
    return J


def _psi(r: np.ndarray, delta: float, asymmetry: float) -> tuple[np.ndarray, np.ndarray]:
    """psi(r) = side(r) clip(r) and psi'(r) = side(r) [|r| <= delta] of the (asymmetric) Huber loss."""
    side = np.where(r > 0, 2.0 * asymmetry, 2.0 * (1.0 - asymmetry)) if asymmetry != 0.5 else np.ones_like(r)
    return side * np.clip(r, -delta, delta), side * (np.abs(r) <= delta)


def huber_hessian(form: Form, logs: dict, log_loss: np.ndarray, theta: np.ndarray, delta: float,
                  asymmetry: float = 0.5, rel_step: float = 1e-5) -> np.ndarray:
    """Hessian of the summed (asymmetric) Huber objective of log residuals at `theta`, (P, P).

    J^T diag(psi'(r)) J (psi' taken at `theta`: the Huber loss's second derivative is piecewise constant)
    plus sum_i psi(r_i) d^2 log L_hat_i / d theta^2, the latter by central differences of the analytic
    Jacobian with psi held at `theta` (steps `rel_step` x max(1, |theta_j|)).
    """
    theta = np.asarray(theta, float)
    y = np.asarray(log_loss, float)
    J = log_jacobian(form, theta, logs)
    pred, _ = form.log_predict(theta[None, :], logs)
    psi, dpsi = _psi(pred[0] - y, delta, asymmetry)
    H = J.T @ (dpsi[:, None] * J)
    for k in range(theta.size):
        h = rel_step * max(1.0, abs(theta[k]))
        e = np.zeros(theta.size)
        e[k] = h
        H[:, k] += (log_jacobian(form, theta + e, logs).T @ psi - log_jacobian(form, theta - e, logs).T @ psi) / (2 * h)
    return 0.5 * (H + H.T)


def huber_covariance(form: Form, logs: dict, log_loss: np.ndarray, theta: np.ndarray, delta: float,
                     asymmetry: float = 0.5, keep=None) -> tuple[np.ndarray | None, str | None]:
    """Fit-space covariance of a Huber fit's optimum (module docstring) and, when None, why.

    `keep`: the fit-space indices whose covariance is wanted (default all); the others are held at their
    values (their rows and columns of the (P, P) result are 0).
    """
    theta = np.asarray(theta, float)
    keep = np.arange(theta.size) if keep is None else np.asarray(keep, int)
    n, p = np.asarray(log_loss).shape[0], keep.size
    if p == 0:
        return None, "no free parameter to give a covariance of"
    if n <= p:
        return None, f"{n} runs for {p} free parameters: no residual degrees of freedom"
    pred, _ = form.log_predict(theta[None, :], logs)
    psi, dpsi = _psi(pred[0] - np.asarray(log_loss, float), delta, asymmetry)
    m = float(dpsi.mean())
    if not m > 0:
        return None, f"no run lies within the Huber delta {delta:g} of the law: the objective has no curvature there"
    H = huber_hessian(form, logs, log_loss, theta, delta, asymmetry)[np.ix_(keep, keep)]
    inv, why = _inverse(H)
    if inv is None:
        return None, why
    K = 1.0 + (p / n) * float(dpsi.var()) / (m * m)
    cov = np.zeros((theta.size, theta.size))
    cov[np.ix_(keep, keep)] = K * float(np.sum(psi * psi)) / (n - p) / m * inv
    return cov, None


def least_squares_covariance(J: np.ndarray, resid: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """s^2 (J^T J)^-1 with s^2 = sum r^2 / (n - p) (lmfit's `leastsq`), and, when None, why."""
    n, p = J.shape
    if n <= p:
        return None, f"{n} points for {p} parameters: no residual degrees of freedom"
    inv, why = _inverse(J.T @ J)
    if inv is None:
        return None, why
    return float(np.sum(np.asarray(resid, float) ** 2)) / (n - p) * inv, None


def _inverse(H: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """H^-1 when H is symmetric positive definite (well enough to invert), else (None, why)."""
    if not np.isfinite(H).all():
        return None, "the curvature at the optimum is not finite"
    ev = np.linalg.eigvalsh(H)
    if not ev[0] > 1e-12 * max(ev[-1], 1e-300):
        return None, ("the curvature at the optimum is not positive definite (a flat direction: a parameter the "
                      "runs do not determine)")
    return np.linalg.inv(H), None


def natural_covariance(form: Form, theta: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Fit-space covariance to the natural parameters' (delta method): a scale fitted as its log,
    X = x0 + exp(t), has dX/dt = exp(t); any other parameter is fitted as itself."""
    d = np.array([np.exp(t) if lg else 1.0 for t, lg in zip(np.asarray(theta, float), form.log_params)])
    return cov * np.outer(d, d)


def derived_stderr(fun, theta: np.ndarray, cov: np.ndarray, rel_step: float = 1e-6) -> dict[str, float | None]:
    """Standard errors of derived quantities {name: fun(theta)[name]} by the delta method (central differences)."""
    theta = np.asarray(theta, float)
    names = [k for k, v in fun(theta).items() if v is not None]
    grad = np.zeros((len(names), theta.size))
    for j in range(theta.size):
        h = rel_step * max(1.0, abs(theta[j]))
        e = np.zeros(theta.size)
        e[j] = h
        up, down = fun(theta + e), fun(theta - e)
        grad[:, j] = [(float(up[k]) - float(down[k])) / (2 * h) for k in names]
    var = np.einsum("ij,jk,ik->i", grad, cov, grad)
    return {k: float(np.sqrt(v)) if np.isfinite(v) and v >= 0 else None for k, v in zip(names, var)}
