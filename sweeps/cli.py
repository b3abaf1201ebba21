"""The one `scaling` command. It only parses arguments and calls typed functions.

Each package registers its own sub-commands (``register(subparsers)``) and imports its heavy
modules (torch, lightning) lazily inside the handler, so ``scaling fit`` never pays for torch.

Exit status: 0 success, 2 bad input (one line on stderr, no traceback), 1 any other failure.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
from typing import Sequence

from analysis.errors import BadInput

# Modules that define ``register(subparsers)``; order is the order in --help.
_REGISTRARS = (
    "scaling.data.cli",
    "scaling.train_cli",
    "sweeps.sweep_cli",
    "analysis.cli",
)


class CLIParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line with a did-you-mean, and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = _did_you_mean(self, message)
        sys.stderr.write(f"{self.prog}: error: {message}{hint}\n")
        sys.exit(2)


def _all_option_strings(parser: argparse.ArgumentParser) -> list[str]:
    opts = list(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                opts.extend(_all_option_strings(sub))
    return opts


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    unknown = re.findall(r"(--[\w-]+)", message.split(":", 1)[-1]) if "unrecognized" in message else []
    known = sorted(set(_all_option_strings(parser)))
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scaling`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except BadInput as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(f"scaling: error: {msg}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("scaling: interrupted\n")
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
