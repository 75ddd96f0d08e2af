"""After the send: bounces (DSNs), complaints (ARF), provider events, and what they change.

Every source (a bounce mailbox read by `newsletter bounces import`/`fetch`, a provider webhook on
`newsletter serve`, a 5xx reply during sending) is turned into `events.FeedbackEvent`s, and one
policy applies them to subscribers, the campaign ledger and the subscriber's history.
"""
