"""Exception types: each names the input and the problem so that a user can act on it."""


class Sn9Error(Exception):
    """Base class for every error sn9cloud reports to a user."""


class InputError(Sn9Error):
    """An input cannot be used: missing, unreadable, not a raster, constant, too small."""


class NoOverlapError(InputError):
    """The optical and SAR footprints do not overlap."""


class UnreliableRegistrationError(Sn9Error):
    """Too few consistent matches: declining is safer than publishing a wrong offset map."""


class OutputError(Sn9Error):
    """An output cannot be written."""
