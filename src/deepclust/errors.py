"""User-facing errors.

Every problem with what the user gave us (a path, a name, an array, a number of clusters, a
device) is raised as :class:`DeepclustError` at the boundary, in the user's terms. The CLI
prints its message on one line and exits with status 2.
"""

from __future__ import annotations


class DeepclustError(ValueError):
    """A problem with the user's input or settings, with a message that says how to fix it."""


class DeepclustTypeError(DeepclustError, TypeError):
    """A :class:`DeepclustError` for values of the wrong type (e.g. a dict inside X); also a
    :class:`TypeError`, as scikit-learn's input checks raise for such values."""
