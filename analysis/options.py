"""`FitOptions`: every choice a fit takes, in one frozen object shared by `analysis.fit`, the report and the CLI.

`analysis.fit`, `fit_pair`, `fit_by_family`, `fit_approach2` and `write_report` take a `FitOptions`
(or its fields as keyword arguments, which replace the options' own). A field the command line
exposes carries its flag in its metadata (`flag`, the `commands` that take it, `help` and the
argparse keywords); `add_flags` builds a subcommand's options from those fields and `from_args`
reads the parsed namespace back into a `FitOptions`, so a flag and its field cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

DELTA = 1e-3
"""Huber delta on log residuals, Chinchilla's value (Hoffmann et al. 2022, D.2)."""

_TABLE = ("fit", "report", "suggest")
"""The subcommands that read a results table and fit the parametric law to it."""


def _flag(flag: str, help: str | dict[str, str], commands=_TABLE, **argparse_kw) -> dict:
    return {"flag": flag, "help": help, "commands": tuple(commands), "argparse": argparse_kw}


@dataclass(frozen=True)
class FitOptions:
    """How to fit a results table: its columns, the law, the robust loss, the bootstrap, the backtest."""

    n_col: str = field(default="n_params", metadata=_flag("--n-col", "column of parameters N (default: n_params)"))
    """Column of parameters N."""
    d_col: str = field(default="n_samples", metadata=_flag(
        "--d-col", "column of training samples D (default: n_samples)"))
    """Column of training samples D."""
    loss_col: str = field(default="val_loss", metadata=_flag("--loss-col", "column of the loss (default: val_loss)"))
    """Column of the loss."""
    c_col: str | None = field(default=None, metadata=_flag(
        "--c-col", "column of training FLOPs (default: flops when present)"))
    """Column of training FLOPs (None: flops when present, else 6 N D)."""
    u_col: str | None = field(default=None, metadata=_flag(
        "--u-col", "column of unique samples, for --form data_constrained (default: n_unique_samples)"))
    """Column of unique samples (None: n_unique_samples)."""
    form: str = field(default="chinchilla", metadata=_flag(
        "--form", "law form: chinchilla (default), kaplan, power_n, power_d, power_c, data_constrained (repeated "
        "data discounted), data_constrained_full (repeated data and excess parameters discounted)"))
    """Law form (see `analysis.forms.FORMS`)."""
    bootstrap: int = field(default=1000, metadata=_flag(
        "--bootstrap", "bootstrap resamples for intervals (0: none)", type=int))
    """Bootstrap resamples for the intervals (0 turns them off)."""
    holdout_frac: float = field(default=0.2, metadata=_flag(
        "--holdout-frac", "fraction of top-compute runs held out in the backtest", type=float))
    """Fraction of the largest-compute runs held out in the backtest (0 turns it off)."""
    seed: int = field(default=0, metadata=_flag("--seed", "bootstrap seed", type=int))
    """Bootstrap seed."""
    all_states: bool = field(default=False, metadata=_flag(
        "--all-states", "keep runs whose state is not completed", action="store_true"))
    """Keep runs whose state is not completed."""
    exclude_col: str | None = field(default=None, metadata=_flag(
        "--exclude-col", "leave out rows where COL is true/1/yes (e.g. an outlier flag)", metavar="COL"))
    """A column flagging rows to leave out (true / 1 / yes), e.g. an outlier flag."""
    delta: float = field(default=DELTA, metadata=_flag(
        "--huber-delta", "Huber delta on log residuals (default: 1e-3, Chinchilla's); larger is closer to least "
        "squares", type=float))
    """Huber delta on log residuals (Chinchilla: 1e-3)."""
    asymmetry: float = field(default=0.5, metadata=_flag(
        "--asymmetry", "0.5 (default): symmetric loss; e.g. 0.9 weighs runs below the curve 9x those above, so the "
        "law follows the lower envelope (runs above it lost to a poor lr or seed)", type=float, metavar="TAU"))
    """0.5 symmetric; above 0.5 the fit follows the lower envelope of the runs (`analysis.fitting.Objective`)."""
    approach: int = field(default=3, metadata=_flag(
        "--approach", "3 (default): parametric law; 2: IsoFLOP parabolas per budget, then N_opt ~ C^a, D_opt ~ C^b",
        ("fit",), type=int, choices=(2, 3)))
    """Which fit `scaling fit` runs: 3, the parametric law (`analysis.fit`); 2, IsoFLOP parabolas
    (`analysis.approaches.fit_approach2`)."""
    budget_col: str | None = field(default=None, metadata=_flag(
        "--budget-col", "--approach 2: column of each run's IsoFLOP budget (default: budget when present, else runs "
        "grouped by FLOPs within 5%%)", ("fit",), metavar="COL"))
    """Approach 2: column of each run's IsoFLOP budget (None: budget when present, else FLOPs within 5%)."""
    fix: Any = field(default=None, metadata=_flag(
        "--fix", "hold a parameter of the form at a value instead of fitting it (repeatable), e.g. --fix E=1.6 or "
        "--fix alpha=0.5; the bootstrap, backtest and allocation hold it too", ("fit",), action="append",
        metavar="NAME=VALUE"))
    """Parameters held at a value instead of fitted, {name: value} or "NAME=VALUE" strings
    (`analysis.workflow.fixed_values`); the bootstrap, the backtest and the allocation hold them too."""
    e_min: float | None = field(default=None, metadata=_flag(
        "--e-min", "bound the floor E from below: E = VALUE + exp(e) in the fit, so E >= VALUE", ("fit",),
        type=float, metavar="VALUE"))
    """Lower bound of the floor parameter (E): fitted as E = e_min + exp(e)."""
    loss_floor: float | None = field(default=None, metadata=_flag(
        "--loss-floor", {"fit": "a known lower bound on the loss, for tables without a loss_floor column; the fit "
                                "warns when its E lies below it",
                         "report": "the data's known lower bound on the loss, for a table without a loss_floor "
                                   "column: the report then also fits E held at it and says which backtests better"},
        ("fit", "report"), type=float, metavar="X"))
    """A known lower bound on the loss (None: the table's `loss_floor` column, if any)."""
    by: str | None = field(default=None, metadata=_flag(
        "--by", "family: fit each model family of the table (its family column) on its own, and test the difference "
        "of their exponents by bootstrap; --out then names the comparison (families.json), each family's fit is "
        "written beside it as fit_<family>.json. A table of several families is never fitted pooled", ("fit",),
        choices=("family",)))
    """"family": `scaling fit` fits each model family on its own (`analysis.families.fit_by_family`)."""
    level: float = 0.95
    """Coverage of the bootstrap percentile intervals."""
    grid: np.ndarray | None = field(default=None, compare=False, repr=False)
    """Start grid in fit space (None: the form's; Chinchilla's 4,500 points)."""
    grid_frac: float = 0.05
    """Share of bootstrap resamples also refitted from random starts of the whole grid."""
    success_col: str | None = "success_rate"
    """Column of closed-loop success rates, fitted against compute and loss when it has 4 or more values
    (`analysis.success`); None turns it off."""
    compare: bool = True
    """Also run Approaches 1 and 2 on the same runs (`FitResult.approaches`)."""
    window: int | None = 2
    """Approach 2: distinct sizes each side of a budget's minimum its parabolas go through (None: the whole grid)."""

    @property
    def columns(self) -> dict[str, Any]:
        """The keyword arguments of `analysis.table.load_table` that pick and filter the table's rows and columns."""
        return {"n_col": self.n_col, "d_col": self.d_col, "loss_col": self.loss_col, "c_col": self.c_col,
                "u_col": self.u_col, "all_states": self.all_states, "exclude_col": self.exclude_col}

    def replace(self, **changes) -> FitOptions:
        """A copy with `changes` (field names; TypeError naming an unknown one)."""
        return dataclasses.replace(self, **changes) if changes else self


def resolve(options: FitOptions | None = None, **overrides) -> FitOptions:
    """`options` (default `FitOptions()`) with `overrides` replacing its fields; overrides that are None for
    `form` leave the options' form."""
    if overrides.get("form", ...) is None:
        overrides.pop("form")
    base = FitOptions() if options is None else options
    if not isinstance(base, FitOptions):
        raise TypeError(f"options must be a FitOptions, not {type(base).__name__}")
    return base.replace(**overrides)


def cli_fields(command: str) -> list[dataclasses.Field]:
    """The fields a subcommand exposes as flags, in declaration order."""
    return [f for f in dataclasses.fields(FitOptions) if command in f.metadata.get("commands", ())]


def add_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Add to `parser` one flag per field that `command` exposes (dest: the field's name, default: its default)."""
    for f in cli_fields(command):
        meta = f.metadata
        text = meta["help"][command] if isinstance(meta["help"], dict) else meta["help"]
        parser.add_argument(meta["flag"], dest=f.name, default=f.default, help=text, **meta["argparse"])


def from_args(args: argparse.Namespace, command: str, **overrides) -> FitOptions:
    """The `FitOptions` of a parsed subcommand: every flag it exposes, then `overrides`."""
    values = {f.name: getattr(args, f.name) for f in cli_fields(command) if hasattr(args, f.name)}
    return FitOptions(**{**values, **overrides})
