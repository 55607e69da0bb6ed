"""Exception types, each naming the input and the problem so that a user can act on it,
and the one table that turns any exception into an outcome at the boundary (the CLI's
exit line, a pair's failure, a service's retry decision)."""

from __future__ import annotations

from dataclasses import dataclass


class Sn9Error(Exception):
    """Base class for every error sn9cloud reports to a user."""


class InputError(Sn9Error):
    """An input cannot be used: missing, unreadable, not a raster, constant, too small."""


class ConfigError(InputError):
    """A configuration file, key or value that cannot be used."""


class SettingsError(InputError):
    """An environment setting (SN9CLOUD_THREADS, SN9CLOUD_MODELS, ...) that cannot be used."""


class NoOverlapError(InputError):
    """The optical and SAR footprints do not overlap."""


class UnreliableRegistrationError(Sn9Error):
    """Too few consistent matches: declining is safer than publishing a wrong offset map."""


class OutputError(Sn9Error):
    """An output cannot be written."""


class TransientError(Sn9Error):
    """A failure that may go away by itself (a store answering 503, a timeout): worth a
    retry, unlike every other error here, which the same input would repeat."""


def _first_line(e: BaseException) -> str:
    return next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")


def reason(e: BaseException) -> str:
    """One line saying why: the first non-empty line of the message, else the type's name
    (never an IndexError on an empty message)."""
    return _first_line(e) or type(e).__name__


def _typed(e: BaseException, prefix: str = "") -> str:
    line = _first_line(e)
    return f"{prefix}{type(e).__name__}" + (f": {line}" if line else "")


@dataclass(frozen=True)
class Outcome:
    """What an exception means to whoever caught it at the boundary."""

    kind: str  # input | config | unreliable | output | transient | internal
    message: str
    retry: bool  # a retry could succeed

    @property
    def expected(self) -> bool:
        """A failure the project reports as such (not a bug)."""
        return self.kind != "internal"


#: exception type -> (kind, retry); the first entry the exception is an instance of wins
OUTCOMES: tuple[tuple[type[BaseException], str, bool], ...] = (
    (ConfigError, "config", False),
    (SettingsError, "config", False),
    (InputError, "input", False),
    (UnreliableRegistrationError, "unreliable", False),
    (TransientError, "transient", True),
    (OutputError, "output", False),
    (Sn9Error, "input", False),
    (TimeoutError, "transient", True),
    (ConnectionError, "transient", True),
    (MemoryError, "internal", True),
)


def outcome(e: BaseException) -> Outcome:
    """The outcome of any exception: the project's own errors say what they are; anything
    else is an internal error, reported as such with its type (a bug to report)."""
    for cls, kind, retry in OUTCOMES:
        if isinstance(e, cls):
            return Outcome(kind, reason(e) if isinstance(e, Sn9Error) else _typed(e), retry)
    return Outcome("internal", _typed(e, "unexpected "), False)
