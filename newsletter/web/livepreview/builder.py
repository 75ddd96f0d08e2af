"""One preview build: configuration, issue, `check`, compile. Never raises; failures become data.

A build reloads everything from disk (newsletter.yaml may have changed too) and yields a
`Snapshot`: the compiled issue and the check results, or the problems that stopped it, each with
file, line and a few lines of source so the page can point at the exact spot.
"""

from __future__ import annotations

import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.config import Config, load_config
from newsletter.diagnostics import Diagnostic
from newsletter.errors import ConfigError, IssueInvalid, NewsletterError, RenderError
from newsletter.issue import load_issue
from newsletter.lint import config_diagnostic
from newsletter.render.compiled import CompiledIssue

EXCERPT_CONTEXT = 2  # lines shown before and after the faulty one
_LOCATED = re.compile(r"(?P<path>[^\s:][^:\n]*):(?P<line>\d+): (?P<message>.+)", re.S)


@dataclass(frozen=True)
class SourceLine:
    number: int
    text: str
    marked: bool


@dataclass(frozen=True)
class Problem:
    """Why there is no preview: one located error (file and line when known)."""

    kind: str  # "config", "issue", "template" or "internal"
    message: str
    path: str | None = None
    line: int | None = None
    col: int | None = None
    field: str = ""
    excerpt: tuple[SourceLine, ...] = ()
    details: str = ""  # a traceback for internal errors

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "field": self.field,
            "location": _location(self.path, self.line, self.col),
            "excerpt": [
                {"number": s.number, "text": s.text, "marked": s.marked} for s in self.excerpt
            ],
            "details": self.details,
        }


@dataclass(frozen=True)
class Snapshot:
    version: int
    issue_path: Path
    config: Config | None
    compiled: CompiledIssue | None
    diagnostics: tuple[Diagnostic, ...] = ()  # the `check` results, errors and warnings
    problems: tuple[Problem, ...] = ()  # non-empty when there is nothing to show
    built_at: float = field(default_factory=time.time)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.compiled is not None and not self.problems


class Builder:
    """Builds snapshots of one issue with the configuration found the way the CLI finds it."""

    def __init__(
        self,
        issue_path: str | Path,
        config_path: str | Path | None = None,
        start: Path | None = None,
    ) -> None:
        self.issue_path = Path(issue_path).resolve()
        self.config_path = Path(config_path).resolve() if config_path else None
        self.start = (start or Path.cwd()).resolve()
        self.last_config: Config | None = None  # the last configuration that loaded

    def forget_templates(self) -> None:
        """Drop the theme's parsed templates so the next build reads the folders afresh."""
        from newsletter.render import theme

        if self.last_config is None:
            return
        try:
            env = theme.environment(self.last_config)
        except NewsletterError:
            return
        if env.cache is not None:
            env.cache.clear()

    def build(self, version: int) -> Snapshot:
        began = time.perf_counter()
        config: Config | None = None
        compiled: CompiledIssue | None = None
        diagnostics: list[Diagnostic] = []
        problems: list[Problem] = []
        try:
            config = load_config(self.config_path, start=self.start)
            self.last_config = config
            diagnostics = list(run_check(self.issue_path, config))
            issue = load_issue(self.issue_path)
            compiled = compile_issue(issue, config)
        except ConfigError as exc:
            problems.append(_config_problem(exc))
            if not any(_is_error(d) for d in diagnostics):  # the check bar must not say passed
                diagnostics.append(config_diagnostic(exc))
        except IssueInvalid as exc:
            problems.extend(_diagnostic_problem(d) for d in exc.diagnostics if _is_error(d))
            diagnostics = _merge(diagnostics, exc.diagnostics)
        except RenderError as exc:
            problems.append(_render_problem(exc))
        except NewsletterError as exc:
            problems.append(Problem("internal", str(exc)))
        except Exception as exc:  # a bug anywhere must not take the preview server down
            problems.append(
                Problem(
                    "internal",
                    f"{type(exc).__name__}: {exc}",
                    details="".join(traceback.format_exception(exc)),
                )
            )
        return Snapshot(
            version=version,
            issue_path=self.issue_path,
            config=config,
            compiled=compiled if not problems else None,
            diagnostics=tuple(diagnostics),
            problems=tuple(problems),
            duration_ms=(time.perf_counter() - began) * 1000,
        )


def compile_issue(issue: object, config: Config) -> CompiledIssue:
    from newsletter.render.compile import compile_issue as compile_

    return compile_(issue, config)


def run_check(path: Path, config: Config) -> list[Diagnostic]:
    """The diagnostics `newsletter check` reports for the issue (errors and warnings)."""
    from newsletter.lint import check_issue

    return list(check_issue(path, config))


def _is_error(diagnostic: Diagnostic) -> bool:
    return diagnostic.severity == "error"


def _merge(first: list[Diagnostic], second: list[Diagnostic]) -> list[Diagnostic]:
    seen = set(first)
    return first + [d for d in second if d not in seen]


def _location(path: str | None, line: int | None, col: int | None) -> str:
    if not path:
        return ""
    where = path
    if line:
        where += f":{line}"
        if col:
            where += f":{col}"
    return where


def excerpt(path: str | Path | None, line: int | None) -> tuple[SourceLine, ...]:
    if not path or not line:
        return ()
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    first = max(1, line - EXCERPT_CONTEXT)
    last = min(len(lines), line + EXCERPT_CONTEXT)
    return tuple(
        SourceLine(n, lines[n - 1].expandtabs(4), n == line) for n in range(first, last + 1)
    )


def _diagnostic_problem(d: Diagnostic) -> Problem:
    return Problem("issue", d.message, d.path, d.line, d.col, d.field, excerpt(d.path, d.line))


def _config_problem(exc: ConfigError) -> Problem:
    path = str(exc.path) if exc.path is not None else None
    message = str(exc)
    prefix = _location(path, exc.line, None) + ": "
    if path and message.startswith(prefix):
        message = message[len(prefix) :]
    file_path = path if path and Path(path).is_file() else None
    return Problem("config", message, path, exc.line, None, "", excerpt(file_path, exc.line))


def _render_problem(exc: RenderError) -> Problem:
    """A theme template failed: its message starts with `template-file:line: ` when known."""
    message = str(exc)
    match = _LOCATED.match(message)
    if match is None:
        return Problem("template", message)
    path, line = match.group("path"), int(match.group("line"))
    return Problem("template", match.group("message"), path, line, None, "", excerpt(path, line))
