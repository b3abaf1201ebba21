"""Re-export of the project's bad-input exception (defined once, in `analysis.errors`)."""

from analysis.errors import BadInput

__all__ = ["BadInput"]
