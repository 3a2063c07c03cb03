"""Exceptions raised by the library. The CLI turns each into one line and a non-zero exit code."""


class SeqpoError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, broken model)."""

    exit_code = 2


class UnknownPairError(SeqpoError):
    """The language pair is not written `src-tgt` with two known language codes."""


class InputFileError(SeqpoError):
    """A source/reference/config file is missing, unreadable or inconsistent."""


class SettingsError(SeqpoError):
    """A setting has the wrong type or a value outside its choices."""


class ModelLoadError(SeqpoError):
    """A model or adapter could not be loaded."""

    exit_code = 3


class MissingExtraError(SeqpoError):
    """An optional dependency (e.g. unbabel-comet) is needed but not installed."""
