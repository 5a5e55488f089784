"""The docs site (`make docs`) in a real browser: the home page with its navigation, a notebook page with the run's
figures, the API reference and the search. The site is built by `make docs` (a few minutes: it runs the library
notebooks); here it is only opened, and skipped where it was not built, unless MTC_REQUIRE_DOCS says it must be."""

import os, shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / 'docs' / '_build' / 'html'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
SOURCES = [*(ROOT / 'nbs').glob('*.ipynb'), *(ROOT / 'docs' / 'src').glob('*.md'), ROOT / 'README.md']
BUILT = (SITE / 'index.html').stat().st_mtime if (SITE / 'index.html').exists() else None
if BUILT is None or BUILT < max(p.stat().st_mtime for p in SOURCES) or not CHROMIUM:
    if os.environ.get('MTC_REQUIRE_DOCS'):
        raise RuntimeError(f"MTC_REQUIRE_DOCS is set but {SITE} is missing or older than its sources, or no chromium")
    pytest.skip("no docs site here newer than its sources (make docs), or no chromium", allow_module_level=True)
playwright = pytest.importorskip('playwright.sync_api')


@pytest.fixture(scope='module')
def page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
        yield browser.new_page()
        browser.close()


def open_page(page, name: str):
    page.goto(f'{SITE.as_uri()}/{name}')  # a query string stays one
    page.wait_for_load_state('load')
    return page


def test_the_home_page_is_the_readme_with_every_page_in_its_navigation(page):
    home = open_page(page, 'index.html')
    assert 'Two commands' in home.inner_text('article')
    nav = home.inner_text('.sidebar-tree')
    for title in ('What the default run finds', 'The notebooks', 'API reference', 'Changelog'):
        assert title in nav, title


def test_every_notebook_has_a_page_and_the_benchmark_shows_its_figures(page):
    notebooks = sorted(p.stem for p in (ROOT / 'nbs').glob('*.ipynb') if p.stem != 'index')
    assert all((SITE / 'notebooks' / f'{nb}.html').exists() for nb in notebooks)
    bench = open_page(page, 'notebooks/09_benchmark.html')
    assert 'How each generator fails' in bench.inner_text('article')
    assert bench.locator('article img').count() >= 2  # the figures the run drew


def test_the_api_reference_and_the_search_find_the_library(page):
    api = open_page(page, 'api.html')
    assert 'mtc_nb.prevalence.prevalence' in api.inner_text('article')
    search = open_page(page, 'search.html?q=prevalence')
    search.wait_for_selector('#search-results li', timeout=15000)
    assert 'prevalence' in search.inner_text('#search-results')
