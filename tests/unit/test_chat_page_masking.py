"""The chat page masks card numbers in what it keeps exactly as the server masks them in what it
stores (shared/redaction.py): the page's own functions, taken from chat.html, run in Chromium on the
same inputs as `redact_text`."""

from __future__ import annotations

import re
from pathlib import Path

from shared.redaction import redact_text
from tests.browser import chromium

PAGE = Path(__file__).resolve().parents[2] / "services" / "callback" / "static" / "chat.html"
SAMPLES = [
    "4111111111111111", "my card is 4111 1111 1111 1111, thanks", "4111-1111-1111-1111", "5555 5555 5555 4444",
    "amex 3782 822463 10005 please", "4222222222222", "6011 0000 0000 0000 001",
    "two: 4111111111111111 and 5555555555554444.", "card 4111 1111 1111 1111 12/26", "4111111111111111 123",
    "order 12 4111111111111111", "4111111111111112", "1234 5678 9012 3456", "call me on +1 415 555 0100",
    "(415) 555-0100", "order 123456789012", "41111111111111111111", "account 000123, amount $1,234.56", "",
    "4111.1111.1111.1111", "4111/1111/1111/1111", "4111 - 1111 - 1111 - 1111", "x4111111111111111y",
]


def test_the_page_masks_card_numbers_as_the_server_does() -> None:
    script = re.search(r"<script>([\s\S]*?)</script>", PAGE.read_text())
    assert script is not None
    functions = re.search(r"const CARD_CANDIDATE[\s\S]*?function redactCards[^\n]*\n", script.group(1))
    assert functions is not None, "chat.html has no redactCards (the page must mask what it keeps)"
    with chromium() as browser:
        page = browser.new_page()
        page.set_content(f"<script>{functions.group(0)}</script>")
        masked = page.evaluate("(samples) => samples.map(redactCards)", SAMPLES)
    assert masked == [redact_text(sample) for sample in SAMPLES]
