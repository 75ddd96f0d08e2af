"""Benchmark: compiling an 8-story issue in process, and the `newsletter build` command.

Eight stories of the example's length make ~100 KB of HTML: the most `newsletter check`
allows (102 KB is Gmail's clipping limit, and `build` refuses what `check` rejects).

Each figure is printed next to a baseline measured in the same run (the machine is shared and
noisy, so the ratios matter more than the absolute times):
  compile_issue       vs a bare Jinja2 render of the theme's email.mjml with the same data
  per-recipient fill  vs str.join of the same number of pieces
  newsletter build    vs `python -c pass` (interpreter start-up)
Goals (issue 2): compile under 50 ms, the command under 1 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "issues" / "2026-11-25-microsoft-openai-partnership.yaml"
NEWSLETTER = Path(sys.executable).parent / "newsletter"
STORIES = 8


def eight_story_issue(folder: Path) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    base = data["stories"][0]
    stories = []
    for n in range(STORIES):
        story = {**base, "headline": f"{base['headline']} (part {n + 1})"}
        story["key_points"] = list(base["key_points"])
        story["summary"] = base["summary"] + f"\n\nMore in [the report](https://example.com/r/{n})."
        story["image"] = {"url": f"https://example.com/img/{n}.png", "alt": f"Chart {n + 1}"}
        story["sources"] = [
            {"title": f"Source {n}", "publisher": "Example", "url": f"https://example.com/s/{n}"}
        ]
        stories.append(story)
    data.update(stories=stories, outro='Thanks, {{ subscriber.name | default("reader") }}!')
    path = folder / "2026-12-09-eight-stories.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm caches (templates compiled, CSS parsed) as a long-running process has them
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def median_process_ms(argv: list[str], runs: int, cwd: Path) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    from newsletter.config import load_config
    from newsletter.issue import load_issue
    from newsletter.placeholders import SAMPLE_RECIPIENT
    from newsletter.render.compile import IssueView, NewsletterView, compile_issue
    from newsletter.render.markdown import clear_caches
    from newsletter.render.theme import EMAIL_TEMPLATE, environment

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "newsletter.yaml").write_text(
            (REPO / "newsletter.yaml").read_text(encoding="utf-8"), encoding="utf-8"
        )
        path = eight_story_issue(folder)
        config = load_config(folder / "newsletter.yaml")
        issue = load_issue(path)

        def compile_cold() -> object:
            clear_caches()  # rendered Markdown is per issue: do not measure cache hits
            return compile_issue(issue, config)

        def jinja_cold() -> object:
            clear_caches()
            return template.render(context)

        compile_ms = median_ms(compile_cold, runs=40)
        env = environment(config)
        template = env.get_template(EMAIL_TEMPLATE)
        view = IssueView(
            issue.title, issue.date, issue.slug, issue.subject, issue.preheader, issue.intro,
            issue.outro, issue.stories,
        )  # fmt: skip
        context = {
            "issue": view,
            "newsletter": NewsletterView(config.name, "en", config.base_url, ("1 Street",)),
            "web_url": "https://example.com/issues/x/",
            "web": False,
            "unsubscribe_url": "u",
            "recipient_email": "e",
            "brand": config.brand,  # the theme's branding, as compile_issue passes it
        }
        jinja_ms = median_ms(jinja_cold, runs=40)

        compiled = compile_issue(issue, config)
        fill_ms = median_ms(
            lambda: compiled.render_for(SAMPLE_RECIPIENT, "https://x/unsubscribe/t"), runs=2000
        )
        pieces = [p if isinstance(p, str) else "value" for p in compiled.html.pieces]
        join_ms = median_ms(lambda: "".join(pieces), runs=2000)

        build_ms = median_process_ms(
            [str(NEWSLETTER), "build", str(path), "-o", str(folder / "out")], runs=7, cwd=folder
        )
        python_ms = median_process_ms([sys.executable, "-c", "pass"], runs=7, cwd=folder)
        import_ms = median_process_ms(
            [sys.executable, "-c", "import newsletter.cli, newsletter.render.compile"],
            runs=7,
            cwd=folder,
        )

    size = len(compiled.render_for(SAMPLE_RECIPIENT, "https://x/unsubscribe/t").html.encode())
    print(f"{STORIES}-story issue, sample HTML {size / 1024:.1f} KB")
    print(
        f"compile_issue (median of 40)     {compile_ms:8.2f} ms   "
        f"bare Jinja render of email.mjml {jinja_ms:6.2f} ms   ratio {compile_ms / jinja_ms:5.1f}x"
        f"   goal < 50 ms: {'ok' if compile_ms < 50 else 'MISSED'}"
    )
    print(
        f"per-recipient fill (median 2000) {fill_ms * 1000:8.1f} us   "
        f"str.join of the pieces {join_ms * 1000:12.1f} us   ratio {fill_ms / join_ms:5.1f}x"
    )
    print(
        f"newsletter build (median of 7)   {build_ms:8.0f} ms   "
        f"python -c pass {python_ms:20.0f} ms   ratio {build_ms / python_ms:5.1f}x"
        f"   goal < 1 s: {'ok' if build_ms < 1000 else 'MISSED'}"
    )
    print(f"  of which importing the CLI and renderer: {import_ms:.0f} ms")


if __name__ == "__main__":
    main()
