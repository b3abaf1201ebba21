"""Re-export of the project's bad-input exception (defined once, in `vla_core.errors`), and `one_line`."""

from vla_core.errors import BadInput


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``: how an exception raised by someone else's code (a model
    family's) is reported inside a one-line BadInput."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


__all__ = ["BadInput", "one_line"]
