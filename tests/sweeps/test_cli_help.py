"""Every `--help` of the `scaling` command reads as user text: no Sphinx roles or double backticks from
docstrings, and every option's default in its line."""

from __future__ import annotations

import argparse
import re

from sweeps.cli import build_parser

DEVELOPER_TEXT = re.compile(r":(class|func|meth|mod|attr):|``|::$", re.M)  # Sphinx roles, literals, blocks


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("scaling",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_help_has_no_developer_text_and_shows_every_default():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 10 and ("scaling", "sweep", "run") in dict(parsers)
    for path, parser in parsers:
        text = parser.format_help()
        assert not DEVELOPER_TEXT.search(text), (" ".join(path), DEVELOPER_TEXT.search(text).group())
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or action.required:
                continue
            line = formatter._get_help_string(action) or ""
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in line.lower(), (" ".join(path), action.option_strings, action.default)
    # `scaling train` takes its defaults from RunConfig (its flags default to None so a --config file
    # can set them): each line still names the field's default.
    train = dict(parsers)[("scaling", "train")].format_help()
    assert "[default: 3e-4]" in train.replace("0.0003", "3e-4") and "[default: 200]" in train
