"""The one exception type for bad user input, shared by every package, `Stopped`, and `one_line`.

It lives in `vla_core`, the bottom of the import graph, so `scaling`, `sweeps` and `analysis` all
import it from here. The command line turns it into one line on stderr and exit status 2.
"""


class BadInput(ValueError):
    """Input the user can fix: a wrong flag, a missing file, a malformed table or spec.

    The message must be one line that names the file, option or value and the problem.
    """


class Stopped(BaseException):
    """A run asked to stop by SIGTERM (a sweep worker stopping, SLURM preempting or cancelling its job) that
    saved its checkpoint after the step in progress: the same command resumes it there. The command line
    prints one line and exits 143 (128 + SIGTERM), as the signal's default would have.

    A BaseException, like KeyboardInterrupt: a request to stop, not a failure, so ``except Exception``
    (which records a run as failed) lets it through."""


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``: how an exception raised by someone else's code (a model
    family's) is reported inside a one-line BadInput."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
