"""The send ledger and runner: who is due, rate limit, workers, retries, resume.

    from newsletter.campaign import Campaign, send_issue
    report = send_issue(config, "issues/x.yaml", list_name="default", rate="20/s")

`Campaign.prepare(...)` then `.run(...)` is the same in two steps (the CLI asks for confirmation
in between); `send_test` mails one [TEST] copy; `campaign_status` reads the ledger.
"""

from newsletter.campaign.campaign import Campaign, send_issue
from newsletter.campaign.ledger import Counts, Ledger
from newsletter.campaign.progress import Progress, StreamProgress, Tally
from newsletter.campaign.ratelimit import Rate, RateLimiter, parse_rate
from newsletter.campaign.reports import DryRunReport, SendReport
from newsletter.campaign.retry import RetryPolicy
from newsletter.campaign.status import CampaignStatus, campaign_status
from newsletter.campaign.testcopy import TestCopy, TestSendReport, send_test

__all__ = [
    "Campaign",
    "CampaignStatus",
    "Counts",
    "DryRunReport",
    "Ledger",
    "Progress",
    "Rate",
    "RateLimiter",
    "RetryPolicy",
    "SendReport",
    "StreamProgress",
    "Tally",
    "TestCopy",
    "TestSendReport",
    "campaign_status",
    "parse_rate",
    "send_issue",
    "send_test",
]
