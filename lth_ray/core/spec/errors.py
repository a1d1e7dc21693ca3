"""The one error type of bad settings (a module of its own, so every part of the spec can raise it)."""


class ConfigError(ValueError):
    """A bad setting: the message is one line naming the value and what is allowed."""
