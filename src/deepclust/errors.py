"""User-facing errors.

Every problem with what the user gave us (a path, a name, an array, a number of clusters, a
device) is raised as :class:`DeepclustError` at the boundary, in the user's terms. The CLI
prints its message on one line and exits with status 2.
"""

from __future__ import annotations


class DeepclustError(ValueError):
    """A problem with the user's input or settings, with a message that says how to fix it."""
