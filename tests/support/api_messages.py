"""Real personalised messages for the API-transport tests and benchmark.

The example issue is compiled by the real renderer (MJML, premailer) with a per-recipient
placeholder added to its subject, and `MessageTemplate` fills it per recipient, so the
transports see exactly what a campaign would hand them. `expected_parts` is the truth a
delivered copy is compared with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from newsletter.config import Config, load_config
from newsletter.issue import load_issue
from newsletter.mail.message import MessageTemplate
from newsletter.placeholders import Recipient
from newsletter.transports.base import MessageParts, OutgoingMessage

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "issues" / "2026-11-25-microsoft-openai-partnership.yaml"
SUBJECT = "subject: \"Your brief, {{ subscriber.name | default('friend') }}: Microsoft and OpenAI\""

TRICKY = [
    Recipient("plain@example.com", "Ada Lovelace"),
    Recipient("noname@example.com", None),
    Recipient("quote@example.com", 'Ada "The Countess" Lovelace'),
    Recipient("comma@example.com", "Lovelace, Ada"),
    Recipient("accent@example.com", "Zoë Ångström-Ñúñez"),
    Recipient("emoji@example.com", "🎉 Party 🚀 Person"),
    Recipient("cjk@example.com", "山田 太郎"),
    Recipient("rtl@example.com", "שלום עליכם"),
    Recipient("html@example.com", "<b>Bold</b> & <script>alert(1)</script>"),
    Recipient("percent@example.com", "%recipient.v0% [nl:0] 100%"),
    Recipient("ann@example.com", "Ann"),
    Recipient("anna@example.com", "Anna"),
    Recipient("first.last+tag@sub.example.co.uk", "Tagged"),
]


def make_project(root: Path, *, name: str = "Test Letter") -> Path:
    (root / "issues").mkdir(parents=True, exist_ok=True)
    text = EXAMPLE.read_text(encoding="utf-8")
    text = re.sub(r"^subject: .*$", SUBJECT, text, count=1, flags=re.M)
    (root / "issues" / EXAMPLE.name).write_text(text, encoding="utf-8")
    (root / "newsletter.yaml").write_text(
        f"name: {name}\n"
        "from: Test Letter <news@example.org>\n"
        "reply_to: Editors <editors@example.org>\n"
        "base_url: https://news.example.org\n"
        "postal_address: 1 Test Street, Testville\n",
        encoding="utf-8",
    )
    return root


@dataclass
class Campaign:
    config: Config
    template: MessageTemplate

    def outgoing(self, recipients: list[Recipient], start: int = 1) -> list[OutgoingMessage]:
        return [
            self.template.outgoing(start + i, r, unsubscribe_url(r), r.email)
            for i, r in enumerate(recipients)
        ]

    def expected_parts(self, recipient: Recipient) -> MessageParts:
        return self.template.outgoing(
            0, recipient, unsubscribe_url(recipient), recipient.email
        ).parts


def unsubscribe_url(recipient: Recipient) -> str:
    token = re.sub(r"[^a-z0-9]", "", recipient.email.lower())[:24]
    return f"https://news.example.org/unsubscribe/{token}.sig"


@lru_cache(maxsize=4)
def _compiled(root: str):  # type: ignore[no-untyped-def]
    from newsletter.render.compile import compile_issue

    config = load_config(Path(root) / "newsletter.yaml")
    issue = load_issue(Path(root) / "issues" / EXAMPLE.name)
    return config, compile_issue(issue, config)


def campaign(root: Path, key: str = "campaign-1") -> Campaign:
    config, compiled = _compiled(str(root))
    return Campaign(config, MessageTemplate(compiled, config, campaign_key=key))


def many(n: int, start: int = 0) -> list[Recipient]:
    names = ["Ann", "Bob", "Zoë", None, "Li Wei", "O'Brien, Pat", "Émilie"]
    return [
        Recipient(f"reader{i:06d}@example.net", names[i % len(names)])
        for i in range(start, start + n)
    ]
