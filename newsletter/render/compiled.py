"""The per-issue compile result: the expensive work done once, per-recipient values as slots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from newsletter.config import Config
from newsletter.issue import Issue
from newsletter.placeholders import Expression, Recipient
from newsletter.render.fill import Fill
from newsletter.render.urlslots import clean_url

# Slot names besides "expr:N" (a placeholder expression of the issue).
UNSUBSCRIBE_URL = "unsubscribe_url"
EMAIL = "email"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str


@dataclass(frozen=True)
class CompiledIssue:
    issue: Issue
    config: Config
    subject: Fill  # plain text, slots "expr:N"
    preheader: Fill  # plain text, slots "expr:N" (empty Fill when the issue has none)
    html: Fill  # the email's HTML part; html-escaped slots
    text: Fill  # the plain-text part; same slot names, unescaped
    web_html: str  # browser version: filled for an anonymous reader, no unsubscribe, no preheader
    expressions: Mapping[str, Expression]  # "expr:N" -> Expression
    url_slots: frozenset[str] = frozenset()  # expressions that are a whole link or image URL

    def values_for(self, recipient: Recipient, unsubscribe_url: str) -> dict[str, str]:
        """Every slot value for one recipient; each expression is evaluated once."""
        context = recipient.context()
        values = {name: expr.evaluate(context) for name, expr in self.expressions.items()}
        values[UNSUBSCRIBE_URL] = unsubscribe_url
        values[EMAIL] = recipient.email
        return values

    def dropped_urls(self, values: Mapping[str, str]) -> list[str]:
        """The values (from `values_for`) that a link or image URL refuses (scheme not http,
        https or mailto): those links go out as plain text. Free when no expression is a whole
        URL."""
        if not self.url_slots:  # the usual issue: no sort, no list (once per recipient)
            return []
        return [
            v for v in (values[name] for name in sorted(self.url_slots)) if clean_url(v) is None
        ]

    def render_for(self, recipient: Recipient, unsubscribe_url: str) -> RenderedEmail:
        values = self.values_for(recipient, unsubscribe_url)
        return RenderedEmail(
            subject=self.subject.render(values),
            preheader=self.preheader.render(values),
            html=self.html.render(values),
            text=self.text.render(values),
        )
