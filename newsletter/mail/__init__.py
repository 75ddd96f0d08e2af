"""The per-recipient mail stage: a compiled issue becomes one message per subscriber.

    template = MessageTemplate(compiled, config, campaign_key=..., dkim=DkimSigner(...))
    message = template.outgoing(key, recipient, unsubscribe_url, subscriber_id)  # OutgoingMessage

Modules: `message` (`MessageTemplate`: the MIME prefix and suffix built once per issue, the
recipient's slots spliced in per message, Message-ID), `mime` (the byte-level encoders:
quoted-printable segments, RFC 2047 words, folded headers), `dkim` (`DkimSigner`, RFC 6376 and
8463). The bytes go to a `newsletter.transports` transport; the package imports nothing itself.
"""
