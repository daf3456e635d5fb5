"""The status page in a real headless Chromium against a live daemon on loopback.

Set HEALTHD_SCREENSHOTS=DIR (as `make screenshots` does) to keep the screenshots there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from healthd.app import service_infos
from healthd.config import load_config
from healthd.store import CheckInfo, ServiceInfo

from tests.browser import Browser, Page, chromium_path
from tests.pagelab import HTML_BODY, SCRIPT_NAME, Lab, MakeServer, backfill, lab, wait_until

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (make test-tools)")

ROWS = "Object.fromEntries([...document.querySelectorAll('.check[data-id]')].map(e => [e.dataset.id, e.dataset.status]))"
COUNTS = "Object.fromEntries([...document.querySelectorAll('[data-count]')].map(e => [e.dataset.count, +e.textContent]))"

# WCAG 2 contrast of each element's text against the first opaque background behind it
CONTRAST = """(() => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = (e) => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0.9) return c; } return [255, 255, 255]; };
  const out = {};
  for (const sel of SELECTORS) {
    for (const e of document.querySelectorAll(sel)) {
      if (!e.textContent.trim() || !e.getClientRects().length) continue;
      const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(behind(e))];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      out[sel] = Math.min(out[sel] ?? 99, Math.round(ratio * 100) / 100);
    }
  }
  return out;
})()"""
TEXT_SELECTORS = [
    ".pill .st-text", ".pill .icon", ".headline", ".count", ".counts", ".c-name", ".c-type", ".c-target",
    ".facts dt", ".facts dd", ".c-error .kind", ".c-error .msg", ".label", ".svc-meta", ".svc-name",
    ".toolbar", ".switch a", ".filters label", ".foot a", ".live",
]  # fmt: skip


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with Browser() as started:
        yield started


@pytest.fixture
async def running(tmp_path: Path, aiohttp_server: MakeServer) -> AsyncIterator[Lab]:
    async with lab(tmp_path, aiohttp_server) as found:
        yield found


def not_about_events(errors: list[str]) -> list[str]:
    """Page errors, minus the one a daemon without the event stream causes (the page then polls)."""
    return [e for e in errors if "404" not in e]


async def test_dom_shows_statuses_and_counts(running: Lab, browser: Browser) -> None:
    page = await browser.page()
    await page.goto(running.url("/"))
    assert await page.eval(ROWS) == {
        "cache/tcp": "down", "payments/api": "down", "payments/flip": "up",
        "search/slow": "unknown", "shop/tcp": "up", "shop/home": "up",
    }  # fmt: skip
    assert await page.eval(COUNTS) == {
        "services-down": 1, "services-degraded": 1, "services-unknown": 1, "services-up": 1,
        "checks-down": 2, "checks-unknown": 1, "checks-up": 3,
    }  # fmt: skip
    assert await page.eval("document.getElementById('banner').dataset.overall") == "down"
    assert await page.eval("document.querySelector('.headline').textContent") == "1 service down"
    # status is never colour alone: each pill carries an icon and the word
    pills = await page.eval("[...document.querySelectorAll('.check .pill')].map(p => p.textContent.trim())")
    assert set(pills) == {"✕ down", "✓ up", "? unknown"}
    assert not_about_events(page.errors) == []


async def test_script_names_and_html_bodies_are_shown_as_text(running: Lab, browser: Browser) -> None:
    hostile = ServiceInfo(
        SCRIPT_NAME, {"x": SCRIPT_NAME}, (CheckInfo(SCRIPT_NAME, "c", "tcp", "t", 1, 1, 5),)
    )
    running.store.apply([*service_infos(load_config(running.config)), hostile])
    page = await browser.page()
    for path in ("/", "/status/payments/api"):
        await page.goto(running.url(path))
        assert await page.eval("document.scripts.length") == 1  # ours, from /static
        badges = "img:not([src^='/api/v1/'])"  # the check page shows its own badges
        assert await page.eval(f'document.querySelectorAll("{badges}").length') == 0
        assert (
            await page.eval("[...document.querySelectorAll('b')].some(b => b.textContent === 'bold')")
            is False
        )
        text = await page.eval("document.body.textContent")
        assert HTML_BODY[:30] in text  # the hostile body, visible as characters
    await page.goto(running.url("/"))
    names = await page.eval("[...document.querySelectorAll('.svc-name')].map(e => e.textContent)")
    assert SCRIPT_NAME in names
    assert not [e for e in page.errors if e.startswith("dialog")]


async def _has_event_stream(lab_: Lab) -> bool:
    async with aiohttp.ClientSession() as session, session.get(lab_.url("/api/v1/events?limit=1")) as answer:
        return answer.status == 200


async def test_a_state_change_appears_live_without_reload(running: Lab, browser: Browser) -> None:
    if not await _has_event_stream(running):
        pytest.skip("this daemon has no /api/v1/events yet")
    page = await browser.page()
    await page.goto(running.url("/"))
    await page.wait_for("document.getElementById('live').dataset.state === 'live'")
    await page.eval("window.notReloaded = true")
    running.flip.close()  # payments/flip's listener goes away: refused, down at the next probe
    await wait_until(lambda: running.store.check(("payments", "flip")).status.value == "down")  # type: ignore[union-attr]
    await page.wait_for(
        "document.querySelector('[data-id=\"payments/flip\"]').dataset.status === 'down'", timeout=2.0
    )
    await page.wait_for("document.querySelector('[data-count=\"services-down\"]').textContent === '2'", 2.0)
    assert await page.eval("document.querySelector('.headline').textContent") == "2 services down"
    assert (
        await page.eval("document.querySelector('[data-id=\"payments/flip\"] .kind').textContent")
        == "refused"
    )
    assert await page.eval("window.notReloaded") is True


async def test_keyboard_reaches_services_and_bars(running: Lab, browser: Browser) -> None:
    page = await browser.page()
    await page.goto(running.url("/"))
    seen = set()
    for _ in range(40):
        await press(page, "Tab")
        seen.add(
            await page.eval(
                "document.activeElement.tagName + '.' + (document.activeElement.className.baseVal ?? document.activeElement.className)"
            )
        )
    assert {"A.skip", "INPUT.", "SELECT.", "SUMMARY.", "A.c-name", "svg.bars"} <= seen
    await page.eval("document.querySelector('details.service:not([open]) > summary')?.focus()")
    closed = await page.eval("document.querySelectorAll('details.service:not([open])').length")
    await press(page, "Enter")
    assert (
        await page.eval("document.querySelectorAll('details.service:not([open])').length") == closed - 1
        or closed == 0
    )


async def test_bar_tooltips_come_from_the_uptime_series(running: Lab, browser: Browser) -> None:
    page = await browser.page()
    await page.goto(running.url("/"))
    await page.eval("document.querySelector('[data-id=\"cache/tcp\"] svg.bars').focus()")
    await page.wait_for("/UTC: 0.0% up, \\d+ probes/.test(document.querySelector('.tip').textContent)")
    await press(page, "ArrowLeft")  # the hour before: no probes yet
    await page.wait_for("document.querySelector('.tip').textContent.endsWith('no data')")
    assert await page.eval("document.querySelector('.tip').hidden") is False


async def press(page: Page, key: str) -> None:
    codes = {"Tab": 9, "Enter": 13, "ArrowLeft": 37}
    for kind in ("keyDown", "keyUp"):
        await page.send(
            "Input.dispatchKeyEvent",
            {
                "type": kind,
                "key": key,
                "code": key,
                "windowsVirtualKeyCode": codes[key],
                "text": "\r" if key == "Enter" and kind == "keyDown" else "",
            },
        )


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
async def test_contrast_meets_wcag_aa(running: Lab, browser: Browser, dark: bool) -> None:
    page = await browser.page(dark=dark)
    await page.goto(running.url("/"))
    ratios = await page.eval(CONTRAST.replace("SELECTORS", json.dumps(TEXT_SELECTORS)))
    assert set(ratios) >= set(TEXT_SELECTORS) - {".live"}
    assert {sel: r for sel, r in ratios.items() if r < 4.5} == {}


async def test_screenshots_at_both_widths_and_schemes(running: Lab, browser: Browser, tmp_path: Path) -> None:
    where = Path(os.environ.get("HEALTHD_SCREENSHOTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    backfill(running.store, time.time() - 3600)  # 90 days of simulated results behind the live ones
    for width in (1440, 375):
        for dark in (False, True):
            page = await browser.page(width=width, height=900, dark=dark)
            await page.goto(running.url("/"))
            # nothing wider than the screen: a phone never scrolls sideways
            assert await page.eval("document.documentElement.scrollWidth") <= width
            name = f"status-{width}-{'dark' if dark else 'light'}.png"
            await page.screenshot(where / name)
            assert (where / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if width == 1440:
                await page.goto(running.url("/status/payments/api"))
                await page.screenshot(where / f"check-{width}-{'dark' if dark else 'light'}.png")
            await page.close()
