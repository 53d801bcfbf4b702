"""The error every settings check raises, shared by all config sections."""


class ConfigError(ValueError):
    """A setting is missing, unknown or has an invalid value."""


def require(condition: bool, setting: str, message: str) -> None:
    """Raises ConfigError naming `setting` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"invalid setting {setting}: {message}")
