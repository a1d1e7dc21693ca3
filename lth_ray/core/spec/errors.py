"""The one error type of bad settings (a module of its own, so every part of the spec can raise it)."""


class ConfigError(ValueError):
    """A bad setting: the message is one line naming the value and what is allowed."""


def registered(table: dict, name: str, what: str):
    """`table[name]` of a registry (models, data sets, scorers), or one line naming the known ones."""
    if name not in table:
        raise ConfigError(f"{what} {name!r} is unknown; known: {', '.join(table)}")
    return table[name]


def refuse_taken(table: dict, name: str, what: str) -> None:
    """A registry never replaces an entry silently: a name already taken is one line naming the known ones."""
    if name in table:
        raise ConfigError(f"{what} {name!r} is already registered; known: {', '.join(table)}")


def check_choice(name: str, value, allowed) -> None:
    """A setting that takes one of a few names: anything else is one line listing them."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is unknown; allowed: {', '.join(allowed)}")
