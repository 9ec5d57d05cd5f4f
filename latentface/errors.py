"""The one base class of errors caused by the user's input (files, flags, data).

The command line turns any of them into one line ``latentface <command>: error: <message>``
and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LatentfaceError(Exception):
    """Bad input the user can fix: a file, a flag, a dataset, a checkpoint."""
