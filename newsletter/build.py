"""`newsletter build`: an issue's rendered files in `<out_dir>/<slug>/`, all or nothing per file.

A use case over two layers (the renderer and the mail stage), so it lives above both:

    email.html    the HTML part as the sample recipient gets it
    email.txt     the plain-text part, same recipient
    web.html      the browser version (no unsubscribe token, no preheader)
    message.eml   the complete MIME message, headers included
    <image>       each local story image (`image: {path: ...}`), under its published name,
                  for uploading to `<base_url>/issues/<slug>/` (`serve` answers there itself)

Everything is rendered in memory before the first byte is written, and each file is written to a
temporary file and renamed over the old one, so a failure never leaves a half-written file. The
same YAML always gives byte-identical files: the sample message's Date and Message-ID derive from
the issue, not from the clock.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from email.utils import format_datetime
from pathlib import Path

from newsletter.config import Config
from newsletter.errors import IssueInvalid, NewsletterError
from newsletter.issue import load_issue
from newsletter.mail.message import MessageTemplate
from newsletter.placeholders import SAMPLE_RECIPIENT
from newsletter.render.compile import compile_issue
from newsletter.render.compiled import CompiledIssue

FILES = ("email.html", "email.txt", "web.html", "message.eml")


def sample_unsubscribe_url(config: Config) -> str:
    return f"{config.base_url}/unsubscribe/sample"


def build_issue(issue_path: str | Path, config: Config, out_dir: str | Path) -> list[Path]:
    """Load, compile and write the issue; return the written paths. Raises IssueInvalid for an
    issue `newsletter check` finds errors in (the same diagnostics), RenderError for a broken
    theme; nothing is written in either case."""
    from newsletter.lint import inspect_issue

    checked = inspect_issue(issue_path, config)  # parses and compiles once, as send does
    errors = [d for d in checked.diagnostics if d.severity == "error"]
    if errors:
        raise IssueInvalid(errors)
    issue = checked.issue or load_issue(issue_path)
    compiled = checked.compiled or compile_issue(issue, config)
    unsubscribe = sample_unsubscribe_url(config)
    sample = compiled.render_for(SAMPLE_RECIPIENT, unsubscribe)
    contents = {
        "email.html": sample.html.encode("utf-8"),
        "email.txt": sample.text.encode("utf-8"),
        "web.html": compiled.web_html.encode("utf-8"),
        "message.eml": sample_message(compiled, unsubscribe),
    }
    images = {}
    for story in issue.stories:
        if story.image is not None and story.image.local is not None:
            local = story.image.local
            try:
                images[local.name] = local.path.read_bytes()
            except OSError as exc:
                raise NewsletterError(f"cannot read {local.path}: {exc.strerror}") from None
    folder = Path(out_dir) / issue.slug
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = [write_atomic(folder / name, contents[name]) for name in FILES]
        return written + [write_atomic(folder / name, data) for name, data in images.items()]
    except OSError as exc:
        raise NewsletterError(f"cannot write to {folder}: {exc.strerror or exc}") from None


def sample_message(compiled: CompiledIssue, unsubscribe_url: str) -> bytes:
    """The whole message the sample recipient would receive (CRLF line ends, not DKIM-signed)."""
    issue = compiled.issue
    template = MessageTemplate(compiled, compiled.config, campaign_key=f"sample:{issue.slug}")
    midnight = dt.datetime.combine(issue.date, dt.time(), tzinfo=dt.UTC)
    return template.bytes_for(
        SAMPLE_RECIPIENT,
        unsubscribe_url=unsubscribe_url,
        message_id=template.message_id("sample"),
        date=format_datetime(midnight, usegmt=True),
    )


def write_atomic(path: Path, data: bytes) -> Path:
    """Write to a temporary file in the same folder, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
