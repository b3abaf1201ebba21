"""The one exception type for bad user input, shared by every package.

It lives in `vla_core`, the bottom of the import graph, so `scaling`, `sweeps` and `analysis` all
import it from here. The command line turns it into one line on stderr and exit status 2.
"""


class BadInput(ValueError):
    """Input the user can fix: a wrong flag, a missing file, a malformed table or spec.

    The message must be one line that names the file, option or value and the problem.
    """
