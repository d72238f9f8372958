"""Errors a user can cause. The CLI prints them as one line and exits with code 1."""


class FlywheelError(Exception):
    """Base class for errors caused by input, configuration or state the user controls."""


class ConfigError(FlywheelError):
    """A configuration file or override is missing, malformed or names an unknown field."""


class DataError(FlywheelError):
    """Input data cannot be read or does not have the expected shape."""
