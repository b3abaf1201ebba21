"""The one `scaling` command. It only parses arguments and calls typed functions.

Each package registers its own sub-commands (``register(subparsers)``) and imports its heavy
modules (torch, lightning) lazily inside the handler, so ``scaling fit`` never pays for torch.

Exit status: 0 success, 2 bad input (one line on stderr, no traceback), 1 any other failure.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
import warnings
from collections.abc import Sequence

from vla_core.errors import BadInput, Stopped

# Modules that define ``register(subparsers)``; order is the order in --help.
_REGISTRARS = (
    "scaling.data.cli",
    "scaling.train_cli",
    "scaling.hardware_cli",
    "sweeps.sweep_cli",
    "analysis.cli",
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (examples keep their lines); every option's default in its help line."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and not action.required
        if shown and action.option_strings and "default" not in text.lower():
            text += " (default: %(default)s)"
        return text


class CLIParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line with a did-you-mean, and exit status 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but an unknown flag is reported by the sub-command it was given to."""
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            _leaf(self, ns).error(f"unrecognized arguments: {' '.join(extra)}")
        return ns

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = _did_you_mean(self, message)
        sys.stderr.write(f"{self.prog}: error: {message}{hint}\n")
        sys.exit(2)


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    # Only this (sub-)command's own flags: a flag of another sub-command would not be accepted here.
    unknown = re.findall(r"(--[\w.-]+)", message.split(":", 1)[-1]) if "unrecognized" in message else []
    known = sorted(set(parser._option_string_actions))
    for opt in unknown:
        close = difflib.get_close_matches(opt.split("=")[0], known, n=1, cutoff=0.6)
        if close:
            return f" (did you mean {close[0]}?)"
    return ""


def build_parser() -> CLIParser:
    """The full parser with every registered sub-command."""
    parser = CLIParser(
        prog="scaling",
        description="Scaling-law experiments for Vision-Language-Action policies.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CLIParser)
    for name in _REGISTRARS:
        importlib.import_module(name).register(sub)
    return parser


def _leaf(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The sub-command parser that ``args`` came through (``scaling sweep plan`` -> the plan parser)."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subs[0].dest, None) if subs else None
        if chosen is None or chosen not in subs[0].choices:
            return parser
        parser = subs[0].choices[chosen]


def _quiet_stdout() -> None:
    # The reader went away (`scaling fit ... | head`): point stdout at /dev/null so the interpreter's
    # final flush does not raise again, as the Python docs advise for SIGPIPE.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scaling`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # --help prints here: it may meet a closed pipe too
        with warnings.catch_warnings():
            # exp overflowing to inf while the fitter explores far-off exponents is expected (that start
            # just scores inf); the fit reports what matters in its own warnings. PYTHONWARNINGS shows it.
            if not sys.warnoptions:
                warnings.filterwarnings("ignore", message="overflow encountered", category=RuntimeWarning)
            rc = args.func(args)
        sys.stdout.flush()
    except BadInput as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(f"scaling: error: {msg}\n")
        return 2
    except Stopped as exc:
        sys.stderr.write(f"scaling: stopped: {exc}\n")
        return 143
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("scaling: interrupted\n")
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
