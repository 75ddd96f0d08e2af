"""Benchmark: what VERP and Feedback-ID add to the per-recipient hot path.

    python benchmarks/verp.py [--n 20000] [--rounds 5]

Per recipient, as the campaign's workers do: `MessageTemplate.outgoing` (the VERP envelope
sender is made here: an HMAC of the ledger row id) and the message bytes (`.data`), for the
~50 KB benchmark issue, with and without `bounces: address` (Feedback-ID is a fixed header:
built once per campaign). The two are interleaved in rounds in one process (the machine is
shared and noisy); the figure is the median round. Goal: a few microseconds per recipient.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from send import make_project, recipients  # noqa: E402

from newsletter.config import load_config  # noqa: E402
from newsletter.issue import load_issue  # noqa: E402
from newsletter.mail.message import MessageTemplate, Verp, feedback_id  # noqa: E402
from newsletter.render.compile import compile_issue  # noqa: E402


def per_recipient_us(template: MessageTemplate, n: int) -> float:
    """CPU microseconds per recipient for outgoing() plus the message bytes."""
    started = time.process_time()
    for key, recipient, unsubscribe in recipients(n):
        message = template.outgoing(key, recipient, unsubscribe, key)
        assert message.data and message.envelope_from
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_project(folder)
        config = load_config(folder / "newsletter.yaml")
        issue = load_issue(folder / "issues" / "bench.yaml")
        compiled = compile_issue(issue, config)
        plain = MessageTemplate(compiled, config, campaign_key="bench/default")
        verp = MessageTemplate(
            compiled,
            config,
            campaign_key="bench/default",
            verp=Verp(b"s" * 32, "bounces", "news.example.com"),
            feedback_id=feedback_id(issue.slug, "default", config),
        )
        times: dict[str, list[float]] = {"plain": [], "verp": []}
        for _ in range(args.rounds):
            times["plain"].append(per_recipient_us(plain, args.n))
            times["verp"].append(per_recipient_us(verp, args.n))
    base, with_verp = (statistics.median(times[k]) for k in ("plain", "verp"))
    print(f"{args.n} recipients x {args.rounds} rounds, median CPU per recipient:")
    print(f"  without bounces: address        {base:8.1f} us")
    print(f"  with VERP and Feedback-ID      {with_verp:8.1f} us")
    print(f"  difference                     {with_verp - base:+8.1f} us")


if __name__ == "__main__":
    main()
