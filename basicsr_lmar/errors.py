"""The error type of every mistake in what the user gave: a flag, an option, a file, a folder.

A :class:`UserError` is reported as one message that names the input at fault and the fix, with exit
code 2 and no traceback (:func:`basicsr_lmar.cli.errors.run_main`); any other exception is a bug and
keeps its traceback. The module imports nothing, so that every layer (ops, archs, data, models, the
entries) can raise it. The error types that predate it and mean the same derive from it (and keep their
old bases): ``OptionError`` (a ``ValueError``), ``CheckpointMismatchError`` and ``DataError`` (both
``RuntimeError``).
"""


class UserError(Exception):
    """A user's input is wrong or unusable; the message says which input and how to fix it."""
