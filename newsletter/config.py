"""newsletter.yaml, found by walking up from the working directory, plus NEWSLETTER_* overrides.

Every top-level key can be overridden by an environment variable NEWSLETTER_<KEY> (dkim's keys by
NEWSLETTER_DKIM_<KEY>). Without any newsletter.yaml the embedded defaults apply, so a fresh
checkout can build and send to the local outbox at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from newsletter import idn
from newsletter.bouncesettings import BounceSettings, parse_bounce_settings
from newsletter.branding import Brand, BrandError, parse_brand
from newsletter.customheaders import parse_headers
from newsletter.errors import ConfigError
from newsletter.yamlsource import YamlDocument, YamlInvalid, read_yaml

if TYPE_CHECKING:
    from newsletter.db import Database

CONFIG_NAME = "newsletter.yaml"
KEYS = (
    "name",
    "from",
    "reply_to",
    "base_url",
    "postal_address",
    "language",
    "templates",
    "database",
    "transport",
    "dkim",
    "secret_key",
    "lists",
    "theme",
    "timezone",
    "welcome",
    "utm",
    "segments",
    "headers",
    "unsubscribe_mailto",
    "bounces",
)
REQUIRED = ("name", "from")
DKIM_KEYS = ("domain", "selector", "private_key")
LIST_ID_LABEL_MAX = 63  # octets in one label of a domain name (RFC 1035 2.3.4)
DEFAULTS: dict[str, Any] = {
    "name": "Newsletter",
    "from": "Newsletter <newsletter@example.com>",
    "base_url": "http://127.0.0.1:8000",
    "language": "en",
    "database": "newsletter.db",
    "transport": "outbox:./outbox",
}


@dataclass(frozen=True)
class DkimConfig:
    domain: str
    selector: str
    private_key: Path


@dataclass(frozen=True)
class Utm:
    """`utm: {source: newsletter, medium: email}`: the UTM parameters links in an issue get
    (utm_campaign is the issue's slug). Off (None) by default."""

    source: str
    medium: str


@dataclass(frozen=True)
class ListSettings:
    public: bool = False  # accepts sign-ups from the public form


@dataclass(frozen=True)
class NamedSegment:
    """A segment under `segments:`: its expression text and where it is written (parsed where
    it is used, by newsletter.subscribers.segment, whose errors then name this file and line)."""

    text: str
    path: Path | None
    line: int | None


@dataclass(frozen=True)
class Config:
    root: Path  # folder holding newsletter.yaml (or the working directory without one)
    path: Path | None  # the newsletter.yaml read, if any
    name: str
    sender: Address  # the `from` key
    reply_to: Address | None
    base_url: str  # no trailing slash
    postal_address: str | None
    language: str
    templates: Path | None  # theme folder overriding the built-in one file by file
    database: Database  # an SQLite file, or a PostgreSQL database (newsletter.db)
    transport: str
    dkim: DkimConfig | None
    secret_key: str | None
    # List name -> settings; only `public` lists accept sign-ups from the form (see _lists).
    lists: Mapping[str, ListSettings] = dataclasses.field(default_factory=dict)
    # `theme:` branding (accent, background, logo, headings) applied by the default theme.
    brand: Brand = dataclasses.field(default_factory=Brand)
    # IANA zone name for `send --at` times without --tz (None: the machine's zone).
    timezone: str | None = None
    # The welcome issue file (`welcome:`), else issues/_welcome.yaml when it exists.
    welcome: Path | None = None
    utm: Utm | None = None  # link tagging, off by default
    # `segments:` name -> expression, e.g. oslo-pros: 'fields.city == "Oslo" and "pro" in tags'
    segments: Mapping[str, NamedSegment] = dataclasses.field(default_factory=dict)
    # `headers:` custom header lines (name, value) added to every issue message (not to
    # transactional mail); validated in `newsletter.customheaders`.
    headers: tuple[tuple[str, str], ...] = ()
    # `unsubscribe_mailto:` an ASCII address (IDNA domain) added to List-Unsubscribe (RFC 2369).
    unsubscribe_mailto: str | None = None

    @property
    def one_click(self) -> bool:
        """RFC 8058 one-click unsubscribe needs an HTTPS URI: False for a plain-http base_url."""
        return urlsplit(self.base_url).scheme == "https"  # urlsplit lower-cases "HTTPS"

    # `bounces:`: VERP address, soft-bounce rule, reputation guard (see bouncesettings).
    bounces: BounceSettings = dataclasses.field(default_factory=BounceSettings)

    @property
    def public_lists(self) -> frozenset[str]:
        """Lists that accept sign-ups from `newsletter serve`: those declared `public: true`,
        and the default list unless it is declared `public: false`."""
        public = {name for name, settings in self.lists.items() if settings.public}
        if "default" not in self.lists:
            public.add("default")
        return frozenset(public)

    @property
    def signup_path(self) -> str | None:
        """Path of serve's sign-up page for a public list (the default list when it is public,
        else the first public one by name: `/subscribe?list=NAME`); None when no list is
        public, so no page links to a sign-up form that answers 404."""
        public = sorted(self.public_lists)
        if not public:
            return None
        if "default" in public:
            return "/subscribe"
        return f"/subscribe?list={quote(public[0], safe='')}"

    @property
    def sender_domain(self) -> str:
        """The From domain in ASCII: an internationalised one as IDNA A-labels (`xn--...`)."""
        return self.sender.domain

    @property
    def list_id(self) -> str:
        """RFC 2919 List-Id, e.g. `AI Brief <ai-brief.example.com>`."""
        return f"{self.name} <{self.list_id_token}>"

    @property
    def list_id_token(self) -> str:
        """The list-id itself, `<slug>.<sender domain>`: a domain name, so the slug label is
        ASCII and cut to 63 octets (RFC 1035 2.3.4); a long name (or one with no ASCII letters,
        whose slug is only `list`) gets a digest of the whole name, so two newsletters whose
        names share the first 54 characters still differ."""
        slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in self.name.lower())
        slug = slug.strip("-") or "list"
        while "--" in slug:
            slug = slug.replace("--", "-")
        if slug == "list" or len(slug) > LIST_ID_LABEL_MAX:
            digest = hashlib.sha256(self.name.encode()).hexdigest()[:8]
            slug = f"{slug[: LIST_ID_LABEL_MAX - 9].rstrip('-')}-{digest}"
        return f"{slug}.{self.sender_domain}"


def find_config(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    start: Path | None = None,
) -> Config:
    """Load `path`, or the newsletter.yaml found upward from `start`, or the embedded defaults."""
    env = os.environ if environ is None else environ
    if path is None and env.get("NEWSLETTER_CONFIG"):
        path = env["NEWSLETTER_CONFIG"]
    config_path = Path(path) if path is not None else find_config(start)
    doc: YamlDocument | None = None
    values: dict[str, Any] = {}
    if config_path is not None:
        if not config_path.is_file():
            raise ConfigError("configuration file not found", config_path)
        try:
            doc = read_yaml(config_path)
        except YamlInvalid as exc:
            d = exc.diagnostic
            raise ConfigError(d.message, config_path, d.line) from None
        if not isinstance(doc.data, dict):
            raise ConfigError("expected a mapping of settings", config_path, 1)
        values = dict(doc.data)
        _check_keys(values, doc)
        overridden = _env_overrides(env)  # NEWSLETTER_<KEY> may supply a required key
        missing = [k for k in REQUIRED if values.get(k) in (None, "") and k not in overridden]
        if missing:
            raise ConfigError(f"missing required key '{missing[0]}'", config_path, 1)
        root = config_path.resolve().parent
    else:
        values = dict(DEFAULTS)
        root = (start or Path.cwd()).resolve()
    return _build(values, _env_overrides(env), root, config_path, doc)


def _check_keys(values: dict[str, Any], doc: YamlDocument) -> None:
    for key in values:
        if key not in KEYS:
            line = doc.where((key,), key=True)[0]
            hint = difflib.get_close_matches(key, KEYS, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"unknown key '{key}'{suggestion}", doc.path, line)
    dkim = values.get("dkim")
    if dkim is not None:
        if not isinstance(dkim, dict):
            raise ConfigError(
                "'dkim' must be a mapping with domain, selector, private_key",
                doc.path,
                doc.where(("dkim",))[0],
            )
        for key in dkim:
            if key not in DKIM_KEYS:
                line = doc.where(("dkim", key), key=True)[0]
                hint = difflib.get_close_matches(key, DKIM_KEYS, n=1)
                suggestion = f" (did you mean 'dkim.{hint[0]}'?)" if hint else ""
                raise ConfigError(f"unknown key 'dkim.{key}'{suggestion}", doc.path, line)


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in KEYS:
        if key in ("dkim", "lists", "theme", "segments", "utm", "headers", "bounces"):
            continue
        value = env.get(f"NEWSLETTER_{key.upper()}")
        if value is not None:
            out[key] = value
    if env.get("NEWSLETTER_DB"):
        out["database"] = env["NEWSLETTER_DB"]
    dkim = {
        k: env[f"NEWSLETTER_DKIM_{k.upper()}"]
        for k in DKIM_KEYS
        if f"NEWSLETTER_DKIM_{k.upper()}" in env
    }
    if dkim:
        out["dkim"] = dkim
    return out


_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")  # BCP 47, as HTML's lang takes
# Letters, digits and inner hyphens per dot-separated label (IDN allowed; `localhost` too).
_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)*[^\W_](?:[\w-]{0,61}[^\W_])?")


def _check_dkim(
    dkim: dict[str, Any],
    path: Path | None,
    doc: YamlDocument | None,
    *,
    env_keys: set[str],
    in_file: bool,
) -> None:
    for key in DKIM_KEYS:
        value = dkim.get(key)
        place: tuple[object, int | None] = (path, None)
        # A key given (or, with no `dkim:` block in the file, missing) in the environment is
        # blamed on its variable; anything else on the file's line.
        if key in env_keys or (env_keys and key not in dkim and not in_file):
            place = (f"environment variable NEWSLETTER_DKIM_{key.upper()}", None)
        elif doc is not None:
            place = (path, doc.where(("dkim", key))[0])
        if value in (None, ""):
            raise ConfigError(f"'dkim' is missing '{key}'", *place)
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ConfigError(f"'dkim.{key}' must be text", *place)
        # Both go verbatim into the DKIM-Signature header (d=, s=) and the DNS name of the key.
        if key == "domain":
            value = dkim[key] = ascii_domain(str(value), f"'dkim.{key}'", place)
        if key in ("domain", "selector") and not re.fullmatch(r"[A-Za-z0-9._-]+", str(value)):
            raise ConfigError(
                f"'dkim.{key}' must be a DNS name (letters, digits, '.', '-', '_'), "
                f"got {str(value)!r}",
                *place,
            )


@dataclass(frozen=True)
class _Source:
    """Where each key's value comes from: the environment, newsletter.yaml, or the defaults."""

    values: dict[str, Any]
    overrides: dict[str, Any]
    root: Path
    path: Path | None
    doc: YamlDocument | None

    def where(self, key: str) -> tuple[object, int | None]:
        """The (file or variable, line) to name in an error about `key`."""
        if key in self.overrides:
            return f"environment variable NEWSLETTER_{key.upper()}", None
        if self.doc is not None and key in self.values:
            return self.path, self.doc.where((key,))[0]
        return self.path, None

    def raw(self, key: str) -> Any:
        return self.overrides.get(key, self.values.get(key, DEFAULTS.get(key)))


def _not_text(key: str, value: object) -> str:
    """One rule for text keys: YAML reads 12, 1.10 and true as a number or a yes/no (1.10
    becomes 1.1), so only a text is taken, and the error says how to write one."""
    if isinstance(value, bool | int | float):
        kind = "yes/no value" if isinstance(value, bool) else "number"
        return (
            f"'{key}' must be text, and YAML reads {value!r} as a {kind}: put it in quotes "
            f'({key.rsplit(".", 1)[-1]}: "...") to keep it exactly as written'
        )
    return f"'{key}' must be text"


def _text(src: _Source, key: str, *, required: bool = False) -> str | None:
    value = src.raw(key)
    if value is None:
        if required:
            raise ConfigError(f"missing required key '{key}'", *src.where(key))
        return None
    if not isinstance(value, str):
        raise ConfigError(_not_text(key, value), *src.where(key))
    value = value.strip()
    if any(ch in value for ch in "\r\n\x00") and key not in ("postal_address",):
        raise ConfigError(f"'{key}' must be a single line", *src.where(key))
    if required and not value:  # e.g. NEWSLETTER_FROM= set but empty
        raise ConfigError(f"'{key}' must not be empty", *src.where(key))
    return value or None


def _required_text(src: _Source, key: str) -> str:
    return _text(src, key, required=True) or ""


def _address(src: _Source, key: str) -> Address | None:
    raw = _text(src, key, required=key in REQUIRED)
    if raw is None:
        return None
    display, email = parseaddr(raw)
    # parseaddr repairs what it cannot parse ('x@exa mple.com' becomes 'x@example.com'):
    # an address that is not in the text as written would send from a domain nobody typed.
    if (
        "@" not in email
        or email.count("@") != 1
        or " " in email
        or email not in raw
        or not _DOMAIN.fullmatch(email.rpartition("@")[2])
    ):
        raise ConfigError(
            f"'{key}' must be an address like 'Name <name@example.com>', got {raw!r}",
            *src.where(key),
        )
    local, domain = email.split("@")
    if not local.isascii():  # would need SMTPUTF8, which sending does not use
        raise ConfigError(
            f"'{key}' must have an ASCII part before the @, got {raw!r}", *src.where(key)
        )
    domain = ascii_domain(domain, f"'{key}'", src.where(key))
    try:
        return Address(display_name=display, username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"'{key}' is not a valid address: {exc}", *src.where(key)) from None


def ascii_domain(domain: str, what: str, where: tuple[object, int | None]) -> str:
    """`newsletter.idn.ascii_domain`, a refused name as a ConfigError naming `what` at `where`:
    every header, DKIM `d=`, HELO and DNS lookup needs the ASCII form."""
    try:
        return idn.ascii_domain(domain)
    except UnicodeError as exc:  # idna.IDNAError is one
        raise ConfigError(
            f"{what}: {domain!r} is not a valid internationalised domain name (IDNA 2008: {exc})",
            *where,
        ) from None


def _base_url(src: _Source, key: str) -> str:
    base_url = (_text(src, key) or DEFAULTS[key]).rstrip("/")
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:  # e.g. an unclosed IPv6 bracket: reported below like any bad URL
        parts = urlsplit("")
    if parts.username is not None or parts.password is not None:
        # Not repeated: it holds a password, and would be in every link of every email.
        raise ConfigError(
            f"'{key}' must not contain a user name or password: every subscriber sees it",
            *src.where(key),
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"'{key}' must be an http(s) URL such as https://news.example.com, got {base_url!r}",
            *src.where(key),
        )
    if parts.query or parts.fragment or any(ch.isspace() for ch in base_url):
        # Links are built as base_url + "/u/...": a query, fragment or space would break them.
        raise ConfigError(
            f"'{key}' must not contain spaces, '?' or '#' (every link is built on it), "
            f"got {base_url!r}",
            *src.where(key),
        )
    return _ascii_url(base_url, parts.hostname, parts.port, parts.path, src, key)


# Characters a URL path may hold as written (RFC 3986 unreserved, sub-delims, ':', '@', '/' and
# '%' of an escape already written); anything else (non-ASCII, '<', '>', '"'...) is escaped.
_PATH_SAFE = "/%-._~!$&'()*+,;=:@"


def _ascii_url(url: str, host: str, port: int | None, path: str, src: _Source, key: str) -> str:
    """`url` as every link and header needs it, ASCII: an internationalised host as IDNA
    A-labels (`news.bücher.de` -> `news.xn--bcher-kva.de`, RFC 5891), the path percent-encoded
    (RFC 3986 2.1, UTF-8); ConfigError at the line for a host IDNA 2008 refuses."""
    if url.isascii() and not any(ch in url for ch in '<>"`{}|\\^'):
        return url
    scheme = url.split(":", 1)[0].lower()
    if not host.isascii():
        try:
            host = idn.ascii_domain(host)
        except UnicodeError as exc:
            raise ConfigError(
                f"'{key}' has a host that is not a valid internationalised domain name "
                f"(IDNA 2008): {exc}",
                *src.where(key),
            ) from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{quote(path, safe=_PATH_SAFE)}"


def _language(src: _Source, key: str) -> str:
    language = _text(src, key) or "en"
    if not _LANGUAGE.fullmatch(language):
        raise ConfigError(
            f"'{key}' must be a language tag such as en, de or pt-BR, got {language!r}",
            *src.where(key),
        )
    return language


def _folder(src: _Source, key: str) -> Path | None:
    """A path relative to the configuration's folder (None when not set)."""
    value = _text(src, key)
    return (src.root / value).resolve() if value else None


def _file(src: _Source, key: str) -> Path:
    """A path relative to the configuration's folder, the default when not set."""
    return (src.root / (_text(src, key) or DEFAULTS[key])).resolve()


def _database(src: _Source, key: str) -> Database:
    """An SQLite file (relative to the configuration's folder) or a postgresql:// URL."""
    from newsletter.db import parse_database

    return parse_database(_text(src, key) or DEFAULTS[key], src.root)


def _timezone(src: _Source, key: str) -> str | None:
    """An IANA time zone name such as Europe/Berlin (zoneinfo), or None when not set."""
    import zoneinfo

    name = _text(src, key)
    if name is None:
        return None
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = difflib.get_close_matches(name, zoneinfo.available_timezones(), n=1)
        suggestion = f" (did you mean {hint[0]}?)" if hint else ""
        raise ConfigError(
            f"'{key}' must be an IANA time zone such as Europe/Berlin, got {name!r}{suggestion}",
            *src.where(key),
        ) from None
    return name


def _welcome(src: _Source, key: str) -> Path | None:
    """The welcome issue: `welcome:` (relative to newsletter.yaml's folder, which must exist),
    else issues/_welcome.yaml when that file exists, else None (no welcome mail)."""
    value = _text(src, key)
    if value is None:
        default = src.root / "issues" / "_welcome.yaml"
        return default.resolve() if default.is_file() else None
    path = (src.root / value).resolve()
    if not path.is_file():
        raise ConfigError(f"'{key}': the welcome issue {value!r} does not exist", *src.where(key))
    return path


def _dkim(src: _Source, key: str) -> DkimConfig | None:
    # Each NEWSLETTER_DKIM_<KEY> replaces that one key of the file's `dkim:` block.
    from_file, from_env = src.values.get(key) or {}, src.overrides.get(key) or {}
    dkim = {**from_file, **from_env}
    if not dkim:
        return None
    _check_dkim(dkim, src.path, src.doc, env_keys=set(from_env), in_file=bool(from_file))
    return DkimConfig(
        domain=str(dkim["domain"]).lower(),
        selector=str(dkim["selector"]),
        private_key=(src.root / str(dkim["private_key"])).resolve(),
    )


def _list_settings(src: _Source, key: str) -> dict[str, ListSettings]:
    return _lists(src.values.get(key), src.path, src.doc)


def _theme_brand(src: _Source, key: str) -> Brand:
    return _brand(src.values.get(key), src.path, src.doc)


def _bounces(src: _Source, key: str) -> BounceSettings:
    def where(*keys: str, key_line: bool = False) -> tuple[object, int | None]:
        line = src.doc.where(("bounces", *keys), key=key_line)[0] if src.doc else None
        return src.path, line

    return parse_bounce_settings(
        src.values.get(key), lambda *keys, key=False: where(*keys, key_line=key)
    )


# Config field -> (its key in newsletter.yaml, the reader that validates it), in the order the
# keys are checked (the first problem found is the one reported).
_READERS: dict[str, tuple[str, Callable[[_Source, str], Any]]] = {
    "base_url": ("base_url", _base_url),
    "language": ("language", _language),
    "templates": ("templates", _folder),
    "dkim": ("dkim", _dkim),
    "name": ("name", _required_text),
    "sender": ("from", _address),
    "reply_to": ("reply_to", _address),
    "postal_address": ("postal_address", _text),
    "database": ("database", _database),
    "transport": ("transport", lambda src, key: _text(src, key) or DEFAULTS[key]),
    "secret_key": ("secret_key", _text),
    "lists": ("lists", _list_settings),
    "brand": ("theme", _theme_brand),
    "timezone": ("timezone", _timezone),
    "welcome": ("welcome", _welcome),
    "utm": ("utm", lambda src, key: _utm(src.values.get(key), src.path, src.doc)),
    "segments": ("segments", lambda src, key: _segments(src.values.get(key), src.path, src.doc)),
    "headers": ("headers", lambda src, key: parse_headers(src.raw(key), src.path, src.doc)),
    "unsubscribe_mailto": ("unsubscribe_mailto", lambda src, key: _mailto(src, key)),
    "bounces": ("bounces", _bounces),
}


def _build(
    values: dict[str, Any],
    overrides: dict[str, Any],
    root: Path,
    path: Path | None,
    doc: YamlDocument | None,
) -> Config:
    src = _Source(values, overrides, root, path, doc)
    fields = {name: read(src, key) for name, (key, read) in _READERS.items()}
    return Config(root=root, path=path, **fields)


def _brand(raw: Any, path: Path | None, doc: YamlDocument | None) -> Brand:
    def where(key: str) -> tuple[int, int]:
        parts = ("theme", key) if key else ("theme",)
        return doc.where(parts, key=True) if doc is not None else (1, 1)

    try:
        return parse_brand(raw, where)
    except BrandError as exc:
        parts = tuple(exc.key.split("."))
        line = doc.where(parts, key=len(parts) > 1)[0] if doc is not None else None
        raise ConfigError(str(exc), path, line) from None


_UTM_KEYS = ("source", "medium")


def _utm(raw: Any, path: Path | None, doc: YamlDocument | None) -> Utm | None:
    """`utm: {source: newsletter, medium: email}`: both one-line texts; absent means off."""

    def line(*keys: str, key: bool = False) -> int | None:
        return doc.where(("utm", *keys), key=key)[0] if doc is not None else None

    if raw is None:
        return None
    example = "'utm: {source: newsletter, medium: email}'"
    if not isinstance(raw, dict):
        raise ConfigError(f"'utm' must be a mapping such as {example}", path, line())
    for key in raw:
        if key not in _UTM_KEYS:
            hint = difflib.get_close_matches(str(key), _UTM_KEYS, n=1)
            suggestion = f" (did you mean 'utm.{hint[0]}'?)" if hint else ""
            raise ConfigError(
                f"unknown key 'utm.{key}'{suggestion}", path, line(str(key), key=True)
            )
    values = {}
    for key in _UTM_KEYS:
        value = raw.get(key)
        if value is None:
            raise ConfigError(f"'utm' needs '{key}', as in {example}", path, line())
        if not isinstance(value, str):
            raise ConfigError(_not_text(f"utm.{key}", value), path, line(key))
        text = value.strip()
        if not text or any(ch in text for ch in "\r\n\x00"):
            raise ConfigError(f"'utm.{key}' must be one line of text", path, line(key))
        values[key] = text
    return Utm(**values)


_LIST_KEYS = ("public",)
_LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # as the subscriber store's


def _lists(raw: Any, path: Path | None, doc: YamlDocument | None) -> dict[str, ListSettings]:
    """`lists: {weekly: {public: true}, staff: {}}`: validated, with file and line on errors."""

    def line(*keys: str, key: bool = False) -> int | None:
        return doc.where(("lists", *keys), key=key)[0] if doc is not None else None

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "'lists' must be a mapping of list names to settings, e.g. "
            "'lists: {weekly: {public: true}}'",
            path,
            line(),
        )
    out: dict[str, ListSettings] = {}
    for name, settings in raw.items():
        if not _LIST_NAME.match(str(name)):
            raise ConfigError(
                f"'lists': invalid list name {name!r}: use 1-64 letters, digits, '.', '_' or '-',"
                " starting with a letter or digit",
                path,
                line(str(name), key=True),
            )
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            raise ConfigError(
                f"'lists.{name}' must be a mapping such as {{public: true}}", path, line(str(name))
            )
        for key, value in settings.items():
            if key not in _LIST_KEYS:
                hint = difflib.get_close_matches(str(key), _LIST_KEYS, n=1)
                suggestion = f" (did you mean 'lists.{name}.{hint[0]}'?)" if hint else ""
                raise ConfigError(
                    f"unknown key 'lists.{name}.{key}'{suggestion}",
                    path,
                    line(str(name), str(key), key=True),
                )
            if not isinstance(value, bool):
                raise ConfigError(
                    f"'lists.{name}.{key}' must be true or false, got {value!r}",
                    path,
                    line(str(name), str(key)),
                )
        out[str(name)] = ListSettings(public=bool(settings.get("public", False)))
    return out


def _segments(raw: Any, path: Path | None, doc: YamlDocument | None) -> dict[str, NamedSegment]:
    """`segments: {oslo-pros: 'fields.city == "Oslo"'}`: names as list names, texts as text."""

    def line(*keys: str, key: bool = False) -> int | None:
        return doc.where(("segments", *keys), key=key)[0] if doc is not None else None

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "'segments' must be a mapping of names to expressions, e.g. "
            """'segments: {oslo: 'fields.city == "Oslo"'}'""",
            path,
            line(),
        )
    out: dict[str, NamedSegment] = {}
    for name, text in raw.items():
        if not _LIST_NAME.match(str(name)):
            raise ConfigError(
                f"'segments': invalid segment name {name!r}: use 1-64 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit",
                path,
                line(str(name), key=True),
            )
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(
                f"'segments.{name}' must be an expression in quotes, e.g. "
                """'fields.city == "Oslo"'""",
                path,
                line(str(name)),
            )
        out[str(name)] = NamedSegment(text, path, line(str(name)))
    return out


def _mailto(src: _Source, key: str) -> str | None:
    """`unsubscribe_mailto: unsubscribe@example.com`: the mailbox added to List-Unsubscribe as
    `<mailto:ADDRESS?subject=unsubscribe%20TOKEN>` (RFC 2369), its domain as IDNA."""
    raw = _text(src, key)
    if raw is None:
        return None
    local, at, domain = raw.rpartition("@")
    if (
        not at
        or not local
        or not local.isascii()
        or not re.fullmatch(r"[A-Za-z0-9!#$&'*+\-/=^_`{|}~.]+", local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or not _DOMAIN.fullmatch(domain)
    ):
        raise ConfigError(
            f"'{key}' must be a bare ASCII address like unsubscribe@example.com (it goes "
            f"into a mailto: URI), got {raw!r}",
            *src.where(key),
        )
    return local + "@" + ascii_domain(domain, f"'{key}'", src.where(key))
