"""Scaling-law functions: pure, vectorised over numpy arrays, no fitting machinery.

Every function maps sizes to predicted loss. N is parameters, D training samples (or tokens),
C training FLOPs, U unique samples. Parameters use the names of the papers that define them.
"""

from __future__ import annotations

import numpy as np


def chinchilla(N, D, E: float, A: float, B: float, alpha: float, beta: float):
    """Chinchilla form (Hoffmann et al. 2022, eq. 2): L = E + A / N^alpha + B / D^beta.

    Args:
        N: parameters. D: training samples. E: irreducible loss. A, B: scale of the parameter
        and data terms. alpha, beta: their exponents.
    """
    N, D = np.asarray(N, float), np.asarray(D, float)
    return E + A / N**alpha + B / D**beta


def kaplan(N, D, N_c: float, D_c: float, alpha_N: float, alpha_D: float):
    """Kaplan et al. 2020 (eq. 1.5): L = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    return ((N_c / N) ** (alpha_N / alpha_D) + D_c / D) ** alpha_D


def power_law(X, E: float, A: float, alpha: float):
    """One-variable law with an irreducible term: L(X) = E + A / X^alpha (X = N, D or C)."""
    return E + A / np.asarray(X, float) ** alpha


def effective_data(D, U, r_star: float):
    """Effective data under repetition (Muennighoff et al. 2023, eq. 5).

    D' = U + U R* (1 - exp(-R / R*)) with R = D / U - 1 repetitions beyond the first epoch:
    repeated samples are worth less and less, at most U (1 + R*) in total.

    Args:
        D: samples seen. U: unique samples. r_star: R*, the repetition "half-life" (fitted; 15.4
            in the paper).
    """
    D, U = np.asarray(D, float), np.asarray(U, float)
    R = np.maximum(D / U - 1.0, 0.0)
    return U + U * r_star * (1.0 - np.exp(-R / r_star))


def data_constrained(N, D, U, E: float, A: float, B: float, alpha: float, beta: float, r_star: float):
    """Data-constrained Chinchilla (Muennighoff et al. 2023): D replaced by the effective data D'."""
    return chinchilla(N, effective_data(D, U, r_star), E, A, B, alpha, beta)


def compute_optimal_exponents(alpha: float, beta: float) -> tuple[float, float]:
    """Exponents of N_opt ~ C^a and D_opt ~ C^b for the Chinchilla form: a = beta/(alpha+beta), b = 1-a."""
    a = beta / (alpha + beta)
    return a, alpha / (alpha + beta)
