"""`newsletter init` (a new newsletter project) and `newsletter new` (a skeleton issue).

Neither ever overwrites a file: every target is checked before anything is written, and files are
created in exclusive mode, so an existing file is reported and left exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from email.headerregistry import Address
from pathlib import Path

from newsletter.config import CONFIG_NAME, find_config
from newsletter.errors import NewsletterError
from newsletter.issue import slugify
from newsletter.lint import SKELETON_MARK, SKELETON_URL

ISSUES_DIR = "issues"
THEME_DIR = "templates"


def default_theme_dir() -> Path:
    """The built-in theme: the repository's top-level templates/ folder."""
    from newsletter.render.theme import BUILTIN_THEME

    return BUILTIN_THEME


def _yaml_str(text: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar: safe for any title or name.
    return json.dumps(text, ensure_ascii=False)


def _one_line(text: str, what: str) -> str:
    text = text.strip()
    if not text:
        raise NewsletterError(f"the {what} is empty")
    if re.search(r"[\x00-\x1f\x7f\u2028\u2029]", text):
        raise NewsletterError(f"the {what} must be one line without control characters")
    return text


CONFIG_TEMPLATE = """\
# Configuration of this newsletter, used by every `newsletter` command run in this folder or
# below it. Each key can be overridden by an environment variable NEWSLETTER_<KEY>, for example
# NEWSLETTER_TRANSPORT to send through a real server without editing this file.

# The newsletter's name, shown in the email header and the List-Id.
name: {name}
# The sender: a display name and an address at a domain you control (SPF/DKIM must cover it).
from: {sender}
# Where replies go (optional).
# reply_to: Editors <editors@example.com>
# Public URL of `newsletter serve`: the "View in browser" and "Unsubscribe" links point here.
base_url: http://127.0.0.1:8000
# Your postal address for the footer: anti-spam laws require one in commercial email.
postal_address: {postal}
# Language of the issues (the lang attribute of the email).
language: en
# A theme folder whose files replace the built-in theme's, file by file.
{templates_line}
# The SQLite database of subscribers and send records (relative to this file).
database: newsletter.db
# Where mail goes: outbox:./outbox writes .eml files to look at instead of sending.
transport: outbox:./outbox
# DKIM signing: `newsletter dkim keygen` writes a key, fills in this block and prints the DNS
# record to publish. `newsletter doctor` checks the whole setup before real mail goes out.
# dkim:
#   domain: example.com
#   selector: nl202601
#   private_key: dkim/nl202601.example.com.pem
# secret_key signs unsubscribe links: set NEWSLETTER_SECRET_KEY in the environment rather than
# writing it here.
# A mailbox readers can also unsubscribe by writing to (added to List-Unsubscribe as a mailto:).
# unsubscribe_mailto: unsubscribe@example.com
# Extra header fields for every issue (not the ones newsletter sets itself).
# headers:
#   X-Campaign: weekly
"""

SAMPLE_ISSUE = """\
# A sample issue: `newsletter check` and `newsletter build` work on it as it is.
# `newsletter new "Title"` starts the next one.
title: {title}
date: {date}
# subject defaults to the title; subject, preheader, intro and outro may greet each reader with
# {{{{ subscriber.name | default("reader") }}}}.
preheader: A first issue to show how an issue file turns into an email.
intro: |
  Hello {{{{ subscriber.name | default("there") }}}}, welcome to the first issue.

stories:
  - headline: How an issue is written
    dek: One YAML file per issue, Markdown inside.
    summary: |
      Each issue is a YAML file in the `issues/` folder. It has a title, a date and a list of
      stories; each story has a headline, a summary, why it matters and its sources.

      Text fields are **Markdown**: emphasis, links, lists and `code` all work.
    why_it_matters: |
      Writing in plain text keeps the focus on the content, and `newsletter check` points at
      any mistake by file, line and field before anything reaches a subscriber.
    key_points:
      - "`newsletter new \\"Title\\"` creates the skeleton of the next issue."
      - "`newsletter check` lists every problem at once."
      - "`newsletter build` writes the email as subscribers will see it."
    takeaway: |
      Replace this sample with your own first issue.
    sources:
      - title: CommonMark quick reference
        publisher: CommonMark
        url: https://commonmark.org/help/
"""

SKELETON = """\
# Draft created by `newsletter new`. Replace every "{mark}" text and the {url} link:
# `newsletter check` reports each one as an error until it is gone, so a draft cannot be sent.
title: {title}
date: {date}
# subject: defaults to the title; may use {{{{ subscriber.name | default("reader") }}}}
preheader: "{mark} one line the inbox shows after the subject (up to 150 characters)"
intro: |
  {mark} a short introduction (optional: delete it if not needed).

stories:
  - headline: "{mark} the story's headline"
    # dek: an optional sub-headline
    summary: |
      {mark} what happened, in short paragraphs separated by blank lines.
    why_it_matters: |
      {mark} why readers should care.
    key_points:
      - "{mark} a key point"
      - "{mark} another key point"
    takeaway: |
      {mark} the closing thought (optional: delete it if not needed).
    # image: {{url: "https://...", alt: "what the image shows"}}
    sources:
      - title: "{mark} title of the source"
        publisher: "{mark} who published it"
        url: {url}
# outro: |
#   An optional closing note.
"""


def _refuse_existing(targets: list[Path]) -> None:
    existing = [t for t in targets if t.exists()]
    if existing:
        names = ", ".join(str(t) for t in existing[:5])
        more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        raise NewsletterError(f"already exists, not overwriting: {names}{more}")


def _write_new(path: Path, text: str) -> None:
    _make_folder(path.parent)
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise NewsletterError(f"already exists, not overwriting: {path}") from None
    except OSError as exc:
        path.unlink(missing_ok=True)  # never leave half a file behind
        raise NewsletterError(f"cannot write {path}: {exc.strerror or exc}") from None


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file sits where a folder (or one of its parents) should be
        raise NewsletterError(f"cannot create folder {folder}: a file is in the way") from None
    except OSError as exc:
        raise NewsletterError(f"cannot create folder {folder}: {exc.strerror or exc}") from None


def init_project(
    directory: str | Path,
    *,
    name: str | None = None,
    copy_theme: bool = False,
    today: dt.date | None = None,
) -> list[Path]:
    """Create a newsletter project in `directory`; return the files created."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise NewsletterError(f"{root} exists and is not a folder")
    name = _one_line(name or _name_from(root), "newsletter name")
    date = today or dt.date.today()
    config_path = root / CONFIG_NAME
    issue_path = root / ISSUES_DIR / f"{date.isoformat()}-welcome.yaml"
    theme: list[tuple[Path, Path]] = []
    if copy_theme:
        source = default_theme_dir()
        if not source.is_dir():
            raise NewsletterError(f"the built-in theme is missing: no folder {source}")
        theme = [
            (f, root / THEME_DIR / f.relative_to(source))
            for f in sorted(source.rglob("*"))
            if f.is_file() and "__pycache__" not in f.parts
        ]
    _refuse_existing([config_path, issue_path] + [target for _, target in theme])
    sender = str(Address(display_name=name, addr_spec="newsletter@example.com"))
    templates_line = f"templates: {THEME_DIR}" if copy_theme else f"# templates: {THEME_DIR}"
    config_text = CONFIG_TEMPLATE.format(
        name=_yaml_str(name),
        sender=_yaml_str(sender),
        postal=_yaml_str(f"{name}, 1 Example Street, Springfield 12345, Country"),
        templates_line=templates_line,
    )
    title = f"{name} — {date.strftime('%B')} {date.day}, {date.year}"
    issue_text = SAMPLE_ISSUE.format(title=_yaml_str(title), date=date.isoformat())
    created: list[Path] = []
    try:
        for path, text in ((config_path, config_text), (issue_path, issue_text)):
            _write_new(path, text)
            created.append(path)
        for src, target in theme:
            _make_folder(target.parent)
            try:
                shutil.copyfile(src, target)
            except OSError as exc:
                target.unlink(missing_ok=True)
                raise NewsletterError(f"cannot write {target}: {exc.strerror or exc}") from None
            created.append(target)
    except NewsletterError:
        # All or nothing: a half-made project would make the next `init` refuse to overwrite.
        for path in reversed(created):
            path.unlink(missing_ok=True)
        raise
    return created


def _name_from(root: Path) -> str:
    words = re.split(r"[-_\s]+", root.resolve().name)
    return " ".join(w[:1].upper() + w[1:] for w in words if w) or "Newsletter"


def issues_folder(config_path: Path | None = None, start: Path | None = None) -> Path:
    """issues/ beside the newsletter.yaml in use (given, or found upward), else ./issues."""
    found = config_path or find_config(start)
    base = found.resolve().parent if found else (start or Path.cwd())
    return base / ISSUES_DIR


def new_issue(title: str, *, date: dt.date | None = None, folder: Path | None = None) -> Path:
    """Write the skeleton `<folder>/<date>-<slug>.yaml`; return its path."""
    title = _one_line(title, "title")
    date = date or dt.date.today()
    folder = folder if folder is not None else issues_folder()
    path = folder / f"{date.isoformat()}-{slugify(title)}.yaml"
    _refuse_existing([path])
    text = SKELETON.format(
        title=_yaml_str(title), date=date.isoformat(), mark=SKELETON_MARK, url=SKELETON_URL
    )
    _write_new(path, text)
    return path
