"""The built leaderboard site in a real headless Chromium: loads clean, ranks, draws, compares.

Playwright drives the system's Chromium (``executable_path``; no browser download). Skips only
when Chromium is absent (``apt-get install chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from gather_envs.leaderboard.build import build_data, write_site
from gather_envs.leaderboard.verify import verify_submission

SUBMISSIONS = Path(__file__).resolve().parents[2] / "baselines" / "submissions"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
CHROMIUM_FLAGS = [
    # No sandbox as root; no background connections (this machine's network is closed).
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The site built from the shipped baselines."""
    verifications = [verify_submission(path) for path in sorted(SUBMISSIONS.iterdir()) if path.is_dir()]
    data = build_data(verifications)
    return data, write_site(data, tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """The system's headless Chromium, driven by Playwright."""
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """A new page that has loaded ``url``, and the list its script errors and console errors go to."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"exception: {error}"))
    page.on("console", lambda message: errors.append(message.text) if message.type in ("error", "assert") else None)
    page.goto(url, wait_until="load")
    return page, errors


@pytest.fixture(scope="module")
def loaded(browser: Browser, site: tuple[dict, Path]) -> tuple[Page, list[str]]:
    """The index page of the shipped baselines' site, and its errors."""
    return open_page(browser, site[1].as_uri())


@pytest.fixture
def page(loaded: tuple[Page, list[str]]) -> Page:
    return loaded[0]


def board_of(data: dict, env_id: str) -> dict:
    return next(board for board in data["boards"] if board["env_id"] == env_id)


def test_page_loads_without_console_errors(loaded: tuple[Page, list[str]]) -> None:
    page, errors = loaded
    assert page.evaluate("document.title") == "gather-envs leaderboard"
    assert errors == []


def test_table_lists_the_entries_in_the_verified_order(page: Page, site: tuple[dict, Path]) -> None:
    board = board_of(site[0], "Gather-MultiHop-v0")
    shown = page.evaluate(
        "[...document.querySelectorAll('#ranking tbody tr[data-name]')].map(r => r.dataset.name)"
    )
    assert shown == board["order"] == ["oracle", "heuristic", "random"]
    first = page.evaluate("document.querySelector('#ranking tbody tr').children[3].textContent")
    assert (
        first == f"{next(r['pass'] for r in board['entries'][0]['table'] if r['T'] == 5 and r['k'] == 1):.3f}"
    )


def test_every_board_can_be_selected_and_ranks_as_built(page: Page, site: tuple[dict, Path]) -> None:
    for board in site[0]["boards"]:
        page.evaluate(
            f"(() => {{ const s = document.getElementById('board'); s.value = {json.dumps(board['id'])}; "
            "s.dispatchEvent(new Event('change')); })()"
        )
        shown = page.evaluate(
            "[...document.querySelectorAll('#ranking tbody tr[data-name]')].map(r => r.dataset.name)"
        )
        assert shown == board["order"], board["id"]
    page.evaluate(
        "(() => { const s = document.getElementById('board'); s.value = 'quick/Gather-MultiHop-v0'; "
        "s.dispatchEvent(new Event('change')); })()"
    )


def test_curves_render_as_svg_paths_with_interval_bands(page: Page) -> None:
    curves = page.evaluate(
        "[...document.querySelectorAll('#curves-svg path.curve')].map(p => p.getAttribute('d'))"
    )
    assert len(curves) == 3 and all(d.startswith("M") and "L" in d for d in curves)
    assert page.evaluate("document.querySelectorAll('#curves-svg path.band').length") == 3
    assert (
        page.evaluate("document.querySelectorAll('#heatmap-svg rect').length") == 5 * 4
    )  # T x k (k = 1, 2, 4, 8)


def test_comparison_view_shows_the_paired_boundary_differences(
    page: Page, site: tuple[dict, Path]
) -> None:
    pair = board_of(site[0], "Gather-MultiHop-v0")["pairs"]["oracle|heuristic"]
    at_5 = next(entry for entry in pair["per_budget"] if entry["T"] == 5)
    page.evaluate(
        "(() => { for (const [id, v] of [['cmp-a', 'heuristic'], ['cmp-b', 'oracle']]) { "
        "const s = document.getElementById(id); s.value = v; s.dispatchEvent(new Event('change')); } })()"
    )
    row = page.evaluate(
        "(() => { const r = document.querySelector('#compare-table tr[data-T=\"5\"]'); "
        "return {a: r.querySelector('.only-a').textContent, b: r.querySelector('.only-b').textContent, "
        "diff: r.children[1].textContent}; })()"
    )
    # A = heuristic, B = oracle: the stored pair is the other way round, so the view swaps and negates.
    assert row == {
        "a": str(len(at_5["only_b"])),
        "b": str(len(at_5["only_a"])),
        "diff": f"{-at_5['diff'][0]:+.3f}",
    }
    assert len(at_5["only_a"]) > 0


def test_screenshot_is_a_png(page: Page, tmp_path: Path) -> None:
    shot = tmp_path / "index.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 10_000


HOSTILE = {
    "notes": "<!--<script> </script><script>window.__pwned = 1</script> <img src=x onerror=\"window.__pwned = 2\">",
    "model": "</script><img src=x onerror=window.__pwned=3>",
    "backend": "javascript:window.__pwned=4",
    "authors": ["<!-- ", "]]> --> <b>bold</b>"],
    "links": ["https://example.org/\"><img src=x onerror=window.__pwned=5>", "http://javascript:alert(1)/"],
}


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The site built from the shipped baselines plus a copy of the oracle's whose metadata is hostile."""
    root = tmp_path_factory.mktemp("hostile")
    entry = root / "hostile"
    shutil.copytree(SUBMISSIONS / "oracle", entry)
    data = json.loads((entry / "submission.json").read_text(encoding="utf-8"))
    data.update(name="hostile", **HOSTILE)
    data["agent"]["settings"] = {}
    (entry / "submission.json").write_text(json.dumps(data), encoding="utf-8")
    verifications = [verify_submission(path) for path in [*sorted(SUBMISSIONS.iterdir()), entry] if path.is_dir()]
    assert all(v.ok for v in verifications), [str(p) for v in verifications for p in v.problems]
    built = build_data(verifications)
    return built, write_site(built, root / "site")


def test_hostile_metadata_renders_every_row_and_runs_no_script(
    browser: Browser, hostile_site: tuple[dict, Path]
) -> None:
    data, index = hostile_site
    assert "<!--" not in index.read_text(encoding="utf-8").split('type="application/json">')[1].split("</script>")[0]
    page, errors = open_page(browser, index.as_uri())
    try:
        for board in data["boards"]:
            page.evaluate(
                f"(() => {{ const s = document.getElementById('board'); s.value = {json.dumps(board['id'])}; "
                "s.dispatchEvent(new Event('change')); })()"
            )
            shown = page.evaluate(
                "[...document.querySelectorAll('#ranking tbody tr[data-name]')].map(r => r.dataset.name)"
            )
            assert shown == board["order"] and "hostile" in shown, board["id"]
            assert page.evaluate("document.querySelectorAll('img, b, #details script').length") == 0
            notes = page.evaluate(
                "document.querySelector('#details li[data-name=\"hostile\"] .notes').textContent"
            )
            assert notes == HOSTILE["notes"]
        assert page.evaluate("typeof window.__pwned") == "undefined"
        hrefs = page.evaluate("[...document.querySelectorAll('#details a')].map(a => a.protocol)")
        assert hrefs and set(hrefs) <= {"http:", "https:"}
        assert [e for e in errors if e.startswith("exception:")] == []
    finally:
        page.close()
