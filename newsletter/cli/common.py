"""What every command shares: lazy configuration loading and error mapping."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter.config import Config, load_config
from newsletter.errors import NewsletterError
from newsletter.transports import redact_secrets

F = TypeVar("F", bound=Callable[..., Any])


class AppContext:
    def __init__(self, config_path: Path | None = None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def app(ctx: click.Context | None = None) -> AppContext:
    ctx = ctx or click.get_current_context()
    obj = ctx.find_object(AppContext)
    if obj is None:  # a command invoked outside the group (tests calling it directly)
        obj = ctx.ensure_object(AppContext)
    return obj


def reports_errors(fn: F) -> F:
    """Turn our exceptions into click's clean `Error: ...` output with exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NewsletterError as exc:
            # Messages may repeat what the user typed, which may be a secret pasted in the wrong
            # place: mask the values of the secret environment variables.
            raise click.ClickException(redact_secrets(str(exc))) from None

    return wrapper  # type: ignore[return-value]
