"""A finding of `newsletter doctor`, and where the value it is about came from.

Each finding names the configuration key and its origin as `check` does for issues:
`newsletter.yaml:LINE:COL` for a value written in the file, `environment variable
NEWSLETTER_<KEY>` for one set in the environment, the file alone for a key it lacks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from newsletter.config import Config
from newsletter.diagnostics import Severity
from newsletter.yamlsource import YamlDocument, YamlInvalid, read_yaml


@dataclass(frozen=True)
class Finding:
    """One problem of the setup. `severity` is "error" for what would reach a reader broken
    (a placeholder, a broken link, mail that fails authentication), "warning" otherwise."""

    where: str  # "newsletter.yaml:12:7", "environment variable NEWSLETTER_FROM", a file path
    severity: Severity
    key: str  # dotted configuration key: "from", "dkim.domain", "database"
    message: str

    def format(self) -> str:
        return f"{self.where}: {self.severity}: {self.key}: {self.message}"

    def as_warning(self) -> Finding:
        return replace(self, severity="warning")


def env_variables(key: str) -> tuple[str, ...]:
    """The NEWSLETTER_* variables that set `key` (newsletter.config reads the same names; the
    first one set wins)."""
    if key == "database":
        return ("NEWSLETTER_DB", "NEWSLETTER_DATABASE")
    return (f"NEWSLETTER_{key.replace('.', '_').upper()}",)


class Locator:
    """Where each key of a loaded configuration came from."""

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = os.environ if environ is None else environ
        self.doc: YamlDocument | None = None
        if config.path is not None:
            try:
                self.doc = read_yaml(config.path)
            except YamlInvalid:  # load_config read it a moment ago; positions are a bonus
                self.doc = None
        self.shown = display_path(config.path) if config.path is not None else None

    def from_environment(self, key: str) -> str | None:
        # Any NEWSLETTER_DKIM_* replaces the whole dkim block (newsletter.config).
        if key.startswith("dkim.") and not any(k.startswith("NEWSLETTER_DKIM_") for k in self.env):
            return None
        for name in env_variables(key):
            if self.env.get(name) not in (None, ""):
                return name
        return None

    def in_file(self, key: str) -> bool:
        if self.doc is None or not isinstance(self.doc.data, dict):
            return False
        data: object = self.doc.data
        for part in key.split("."):
            if not isinstance(data, dict) or part not in data:
                return False
            data = data[part]
        return True

    def where(self, key: str) -> str:
        variable = self.from_environment(key)
        if variable is not None:
            return f"environment variable {variable}"
        if self.doc is not None and self.in_file(key):
            line, col = self.doc.where(tuple(key.split(".")))
            return f"{self.shown}:{line}:{col}"
        if self.shown is not None:
            return self.shown
        return "built-in defaults (no newsletter.yaml found)"

    def finding(self, key: str, severity: Severity, message: str) -> Finding:
        return Finding(self.where(key), severity, key, message)


def display_path(path: Path) -> str:
    """`path` relative to the working directory when it is below it (as `check` prints it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
