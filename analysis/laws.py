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
    """Data-constrained Chinchilla, data side only: D replaced by the effective data D'.

    The half of Muennighoff et al. 2023's law that discounts repeated data; `data_constrained_full`
    is the whole law, which also discounts parameters in excess of what the unique data can use.
    """
    return chinchilla(N, effective_data(D, U, r_star), E, A, B, alpha, beta)


def optimal_params_for_data(D, A: float, B: float, alpha: float, beta: float):
    """N_opt(D): the compute-optimal parameter count for D samples under the Chinchilla law.

    At the compute optimum the marginal terms balance, alpha A / N^alpha = beta B / D^beta
    (Hoffmann et al. 2022, eq. 4), so N_opt(D) = (alpha A D^beta / (beta B))^(1/alpha).
    """
    D = np.asarray(D, float)
    return (alpha * A * D**beta / (beta * B)) ** (1.0 / alpha)


def effective_params(N, U_N, r_n_star: float):
    """Effective parameters (Muennighoff et al. 2023): N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)).

    R_N = N / U_N - 1 counts the parameters beyond U_N, the most the unique data can use; like
    repeated data, they are worth less and less, at most U_N (1 + R_N*) in total.
    """
    N, U_N = np.asarray(N, float), np.asarray(U_N, float)
    R = np.maximum(N / U_N - 1.0, 0.0)
    return U_N + U_N * r_n_star * (1.0 - np.exp(-R / r_n_star))


def data_constrained_full(N, D, U, E: float, A: float, B: float, alpha: float, beta: float,
                          r_n_star: float, r_d_star: float):
    """The data-constrained law of Muennighoff et al. 2023 in full: repeated data and excess parameters discounted.

    L = E + A / N'^alpha + B / D'^beta with the effective data D' = `effective_data`(D, U_D, R_D*)
    (U_D = min(U, D), the unique samples seen) and the effective parameters
    N' = `effective_params`(N, U_N, R_N*), U_N = min(N_opt(U_D), N) (`optimal_params_for_data`).
    `data_constrained` is this law without the parameter discount. The paper's fit on C4:
    R_N* = 5.31, R_D* = 15.39 (as in the authors' reference code, github.com/huggingface/datablations).

    Args:
        N: parameters. D: samples seen. U: unique samples. E, A, B, alpha, beta: Chinchilla's.
        r_n_star, r_d_star: R_N*, R_D*, how fast excess parameters and repeated data lose value.
    """
    N, D, U = np.asarray(N, float), np.asarray(D, float), np.asarray(U, float)
    U_D = np.minimum(U, D)
    U_N = np.minimum(optimal_params_for_data(U_D, A, B, alpha, beta), N)
    return chinchilla(effective_params(N, U_N, r_n_star), effective_data(D, U_D, r_d_star), E, A, B, alpha, beta)


def compute_optimal_exponents(alpha: float, beta: float) -> tuple[float, float]:
    """Exponents of N_opt ~ C^a and D_opt ~ C^b for the Chinchilla form: a = beta/(alpha+beta), b = 1-a."""
    a = beta / (alpha + beta)
    return a, alpha / (alpha + beta)
