"""The base of every error the toolkit raises on purpose.

Each error also derives from the builtin it refines (``ValueError`` for bad input, ``RuntimeError``
for a failed operation), so ``except ValueError`` keeps working; ``except DftoolkitError`` catches
exactly the toolkit's own, e.g. to print them as one line and let anything else show its traceback.
"""

__all__ = ["DftoolkitError"]


class DftoolkitError(Exception):
    """An error of the toolkit: the message names the file, record or setting at fault."""
