"""Error types shared by every stage. Each names the place (file, line, key) and the fix."""

from __future__ import annotations


class TunesmithError(Exception):
    """Base class: an error a user can act on. The message says what, where and how to fix it."""


class ConfigError(TunesmithError):
    """One or more problems in a config; all are reported together."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        head = f"{len(self.problems)} problem(s) in config" + (f" {source}" if source else "")
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class DataError(TunesmithError):
    """Bad input data: names the file, line or record, the field and the fix."""


class ModelError(TunesmithError):
    """A model could not be found or loaded: says what was looked for, where, and how to get it."""
