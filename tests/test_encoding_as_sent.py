"""Size and encoding as sent (issue #15 section 5), from the bytes a relay receives.

- Each text part's Content-Transfer-Encoding is the smaller one: a Chinese issue goes base64,
  an English one quoted-printable; both decode to the same text, DKIM verifies.
- `check` reports the HTML size as written and as sent; the "as sent" figure is the size of
  the HTML part the relay received.
- The text part wraps at 72 columns of display width (CJK counts double), headlines too.
- A URL field with a space is refused with "contains a space: write %20", one rule for every
  URL field.
"""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml
from cli_support import run
from click.testing import CliRunner
from dkim_support import verify, write_key
from smtp_servers import SmtpServer

from newsletter.config import load_config
from newsletter.mail.dkim import DkimSigner

# About 300 characters of Chinese prose; repeated with a counter it makes an issue whose HTML
# is close to Gmail's clip once encoded.
PROSE = (
    "人工智能正在改变企业的工作方式。从云计算基础设施到办公软件，再到面向消费者的产品，"
    "大型模型已经成为科技行业竞争的核心。微软与开放人工智能研究中心的合作关系进入了新的阶段，"
    "这意味着开发者、企业客户和整个市场都需要重新评估未来的技术路线。"
    "分析人士认为，这种变化并不是合作的结束，而是一种更加成熟的关系：双方在各自扩大平台的同时，"
    "仍然保持着紧密的联系。对于普通读者来说，最重要的是了解这些变化如何影响日常使用的工具和服务。"
)
HEADLINE = "微软与开放人工智能研究中心重新定义合作关系，开发者和企业客户将迎来怎样的变化与机遇呢"


def chinese_issue(project: Path, paragraphs: int = 9, stories: int = 6) -> Path:
    summary = "\n\n".join(f"第{i}段。{PROSE}" for i in range(paragraphs))
    data = {
        "title": "人工智能简报",
        "date": "2026-12-02",
        "subject": "本周人工智能简报",
        "preheader": "微软与开放人工智能研究中心的新阶段",
        "intro": "{{ subscriber.name | default('读者') }}，你好！这是本周的简报。",
        "stories": [
            {
                "headline": f"{HEADLINE}（{n}）",
                "summary": summary,
                "why_it_matters": PROSE,
                "sources": [{"title": "新闻来源", "url": f"https://news.example.org/zh/{n}"}],
            }
            for n in range(stories)
        ],
    }
    path = project / "issues" / "2026-12-02-zh.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def raw_part(data: bytes, subtype: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, the part's body exactly as on the wire)."""
    boundary = re.search(rb'boundary="([^"]+)"', data)
    assert boundary
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\n'.encode()
    start = data.index(head)
    body_start = data.index(b"\r\n\r\n", start) + 4
    encoding = re.search(rb"Content-Transfer-Encoding: (\S+)", data[start:body_start])
    assert encoding
    end = data.index(b"\r\n--" + boundary.group(1), body_start)
    return encoding.group(1).decode(), data[body_start:end]


def display_width(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


def send_one(project: Path, runner: CliRunner, issue: Path) -> tuple[bytes, DkimSigner]:
    key = write_key(project / "dkim.pem", "rsa")
    with SmtpServer() as server:
        with open(project / "newsletter.yaml", "a") as f:
            f.write(
                f"transport: {server.url()}\n"
                f"dkim:\n  domain: example.org\n  selector: s1\n  private_key: {key.name}\n"
            )
        (project / "subs.csv").write_text("email,name\nli@example.net,李雷\n", encoding="utf-8")
        assert run(runner, project, "subscribers", "import", "subs.csv")[0] == 0
        code, output = run(runner, project, "send", str(issue), "--yes")
        assert code == 0, output
        [delivered] = server.wait_for(1)
    config = load_config(project / "newsletter.yaml")
    return delivered.data, DkimSigner.from_config(config.dkim)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("language", "encoding"), [("chinese", "base64"), ("english", "quoted-printable")]
)
def test_each_part_goes_in_the_smaller_encoding(
    project: Path, runner: CliRunner, language: str, encoding: str
) -> None:
    issue = (
        chinese_issue(project, paragraphs=2, stories=2)
        if language == "chinese"
        else next((project / "issues").glob("*.yaml"))
    )
    data, signer = send_one(project, runner, issue)
    assert verify(data, signer)
    msg = parse(data)
    for subtype in ("plain", "html"):
        used, body = raw_part(data, subtype)
        assert used == encoding, (subtype, used)
        assert all(len(line) <= 76 for line in body.split(b"\r\n"))
        decoded = msg.get_body((subtype,)).get_content()  # type: ignore[union-attr]
        if language == "chinese":
            assert "李雷，你好！" in decoded and "第1段。人工智能正在改变" in decoded
            # The other encoding would have been larger: QP triples every CJK byte.
            assert len(body) < len(decoded.encode()) * 1.4
        else:
            assert "Microsoft and OpenAI" in decoded


def test_check_reports_the_html_size_as_written_and_as_sent(
    project: Path, runner: CliRunner
) -> None:
    issue = chinese_issue(project)
    code, output = run(runner, project, "check", str(issue))
    found = re.search(
        r"warning: the email's HTML is ([\d.]+) KB as written, ([\d.]+) KB as sent \(base64\)",
        output,
    )
    assert found, output
    written, sent = float(found.group(1)), float(found.group(2))
    assert written < 90 < sent  # only the encoded size nears the clip: still a warning
    assert code == 0, output
    data, _ = send_one(project, runner, issue)
    encoding, body = raw_part(data, "html")
    assert encoding == "base64"
    # The sample reader's unsubscribe token is a few characters longer than a real one.
    assert abs(len(body) / 1024 - sent) <= 0.1
    decoded = parse(data).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert abs(len(decoded.encode()) / 1024 - written) <= 0.1


def test_the_text_part_wraps_by_display_width(project: Path, runner: CliRunner) -> None:
    issue = chinese_issue(project, paragraphs=2, stories=3)
    data, _ = send_one(project, runner, issue)
    text = parse(data).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    lines = text.splitlines()
    for line in lines:
        assert display_width(line) <= 72 or "://" in line, line
    assert max(map(display_width, lines)) >= 68  # wrapped near the width, not short
    # The long headline wraps, and its rule is as wide as its widest line, not its length.
    first = next(i for i, line in enumerate(lines) if line.startswith(HEADLINE[:10]))
    assert lines[first + 1] and not lines[first + 1].startswith("=")
    assert (lines[first] + lines[first + 1]).startswith(HEADLINE[:30])
    rule = lines[first + 2]
    assert set(rule) == {"="}
    assert len(rule) == max(display_width(lines[first]), display_width(lines[first + 1]))
    # No line starts with closing punctuation.
    assert not any(line[:1] and line[0] in "，。！？）" for line in lines)


@pytest.mark.parametrize(
    ("field", "entry"),
    [
        ("image.url", {"image": {"url": "https://img.example.org/a photo.png", "alt": "A"}}),
        (
            "sources[0].url",
            {"sources": [{"title": "T", "url": "https://news.example.org/a story"}]},
        ),
        # A no-break space and an ideographic space, as pasted from a web page.
        ("image.url", {"image": {"url": "https://img.example.org/a\u00a0photo.png", "alt": "A"}}),
        (
            "sources[0].url",
            {"sources": [{"title": "T", "url": "https://news.example.org/a\u3000story"}]},
        ),
    ],
)
def test_a_url_field_with_a_space_is_refused(
    project: Path, runner: CliRunner, field: str, entry: dict
) -> None:
    story = {"headline": "H", "summary": "S.", "why_it_matters": "W.", **entry}
    story.setdefault("sources", [{"title": "T"}])
    data = {"title": "T", "date": "2026-12-02", "stories": [story]}
    path = project / "issues" / "2026-12-02-space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    code, output = run(runner, project, "check", str(path))
    assert code != 0
    assert re.search(
        rf"2026-12-02-space\.yaml:\d+:\d+: error: stories\[0\]\.{re.escape(field)}: "
        r"contains a space: write %20",
        output,
    ), output
    assert "expected an http:// or https:// URL" not in output


KOREAN = (
    "인공지능은 기업이 일하는 방식을 바꾸고 있습니다. 클라우드 인프라부터 사무용 소프트웨어와 "
    "소비자용 제품에 이르기까지 대형 모델은 기술 업계 경쟁의 중심이 되었습니다. "
    "분석가들은 이러한 변화가 협력의 끝이 아니라 더 성숙한 관계의 시작이라고 봅니다."
)


def test_korean_wraps_between_words_not_inside_them(project: Path, runner: CliRunner) -> None:
    """Korean separates words with spaces and breaks only there (UAX #14); Chinese and
    Japanese break between any two ideographs or kana."""
    data = {
        "title": "인공지능 브리핑",
        "date": "2026-12-02",
        "subject": "이번 주 인공지능 브리핑",
        "stories": [
            {
                "headline": "마이크로소프트와 오픈에이아이의 새로운 관계",
                "summary": f"{KOREAN} {KOREAN}",
                "why_it_matters": KOREAN,
                "sources": [{"title": "출처", "url": "https://news.example.org/ko/1"}],
            }
        ],
    }
    issue = project / "issues" / "2026-12-02-ko.yaml"
    issue.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    sent, _ = send_one(project, runner, issue)
    text = parse(sent).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    words = set(KOREAN.split())
    wrapped = [line for line in text.splitlines() if any(w in line for w in words)]
    assert len(wrapped) > 3
    for line in wrapped:
        assert display_width(line) <= 72, line
        for piece in line.split():
            # Every piece is a whole word of the prose (a cut word would be a fragment).
            assert piece in words or not any(piece in w and piece != w for w in words), line


@pytest.mark.parametrize(
    ("subject", "warned"),
    [
        (
            "本周人工智能简报：微软与开放人工智能研究中心重新定义合作关系，"
            "开发者和企业客户将迎来变化",
            True,
        ),
        (
            "이번 주 인공지능 브리핑: 마이크로소프트와 오픈에이아이의 새로운 관계와 "
            "개발자들의 미래 전망",
            True,
        ),
        ("本周人工智能简报：微软与开放人工智能研究中心", False),
        ("A" * 79, True),
        ("A" * 78, False),
    ],
)
def test_a_subject_wider_than_78_columns_is_warned_about(
    project: Path, runner: CliRunner, subject: str, warned: bool
) -> None:
    issue = chinese_issue(project, paragraphs=1, stories=1)
    data = yaml.safe_load(issue.read_text(encoding="utf-8"))
    data["subject"] = subject
    issue.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    code, output = run(runner, project, "check", str(issue))
    assert code == 0, output
    assert ("keep it under 78 columns" in output) is warned, output
