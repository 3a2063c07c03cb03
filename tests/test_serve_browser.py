"""The web page in a real browser: Debian's headless chromium driven by Playwright types a text,
starts the simulated speaker and watches subtitles and the history fill in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_serve import running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not shutil.which("chromium"),
    reason="no /usr/bin/chromium (apt-get install -y chromium; .ci/run installs it)")


def test_page_translates_live(tiny_model_dir, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')")
    with running_server(tiny_model_dir, tmp_path) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.wait_for_function("document.getElementById('status').textContent === 'connected'", timeout=15000)
            page.select_option("#policy", "wait-k")
            page.fill("#k", "1")
            page.fill("#text", "The weather is nice today. I would like a cup of tea.")
            page.eval_on_selector("#speed", "el => { el.value = 600; el.dispatchEvent(new Event('input')); }")
            assert page.text_content("#speed-value") == "600 words/min"
            page.click("#start")
            # wait-1 writes from the first read on: translated text shows while the speaker talks
            page.wait_for_function("document.getElementById('target').textContent.trim().length > 0",
                                   timeout=30000)
            page.wait_for_function("document.querySelectorAll('#history li').length === 2", timeout=60000)
            items = page.query_selector_all("#history li")
            # newest first
            assert items[0].query_selector(".src").text_content() == "I would like a cup of tea."
            assert items[1].query_selector(".src").text_content() == "The weather is nice today."
            for item in items:
                assert item.query_selector(".lat").text_content().startswith("AL ")
                assert item.query_selector(".tgt").text_content().strip()
            assert page.text_content("#lag").startswith("AL ")
            assert page.text_content("#status").startswith("ready: en-de, wait-k k=1")
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert errors == []
        finally:
            browser.close()
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
