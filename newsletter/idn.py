"""Internationalised domain names in the ASCII form mail needs (IDNA 2008, RFC 5891).

Every header (From, Reply-To, Message-ID, List-Id), DKIM `d=`, the SMTP EHLO and envelope, the
email APIs' from fields and DNS lookups take a domain in ASCII: an internationalised one as
A-labels (`bücher.example` -> `xn--bcher-kva.example`). One rule for the sender's domains
(config), a recipient's (mail.mime.addr_spec) and an EHLO name (transports.smtp): IDNA 2008 with
the UTS #46 mapping, as email-validator and browsers apply it. Python's own "idna" codec is
IDNA 2003, which maps `straße.example` to the different domain `strasse.example`.
"""

from __future__ import annotations

import idna


def ascii_domain(domain: str) -> str:
    """`domain` lower-cased, an internationalised one as A-labels. An A-label written by hand
    (`xn--...`) is checked too: it must decode to a valid U-label. UnicodeError (an
    `idna.IDNAError`) naming the rule for a name IDNA 2008 refuses (a disallowed character,
    Latin and Hebrew in one label...)."""
    if domain.isascii() and "xn--" not in domain.lower():
        return domain.lower()
    unicode = idna.decode(domain) if domain.isascii() else domain
    return idna.encode(unicode, uts46=True).decode("ascii")
