"""The inspectors in a real browser: JupyterLab on 127.0.0.1 over a copy of a notebook on a tiny smoke run, opened in
headless Chromium (Debian's, driven by playwright), run, another latent chosen, the view checked to change; and the
static HTML of the executed notebook, opened in the same browser, showing the inspector's preview."""

import contextlib, json, os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest
from conftest import run_chain, tiny_profile, TINY

BIN = Path(sys.executable).parent
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
if not CHROMIUM:  # .ci/run installs it and sets MTC_REQUIRE_BROWSER: there, a missing browser is a failure
    if os.environ.get("MTC_REQUIRE_BROWSER"):
        raise RuntimeError("MTC_REQUIRE_BROWSER is set but no chromium is installed")
    pytest.skip("no chromium here (apt-get install chromium; .ci/run does)", allow_module_level=True)
playwright = pytest.importorskip('playwright.sync_api')


def notebook(folder: Path) -> dict:
    "A notebook that opens the feature inspector on the tiny run under `folder`."
    settings = {**TINY, 'data_dir': str(folder / 'data'), 'figures_dir': str(folder / 'fig')}
    source = [
        f"from mtc_nb.core import load_profile\nfrom mtc_nb.widgets import FeatureInspector\n"
        f"cfg = load_profile('smoke', **{settings!r})\ninspector = FeatureInspector(cfg).show()"
    ]
    cells = [
        {'cell_type': 'code', 'execution_count': None, 'id': f'c{i}', 'metadata': {}, 'outputs': [], 'source': s}
        for i, s in enumerate(source)
    ]
    return {
        'cells': cells,
        'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3 (mtc_nb)', 'language': 'python'}},
        'nbformat': 4,
        'nbformat_minor': 5,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp('browser')
    run_chain(tiny_profile(folder), upto='features')
    lab = folder / 'lab'
    lab.mkdir()
    (lab / 'inspect.ipynb').write_text(json.dumps(notebook(folder)))
    return folder, lab


@pytest.fixture(scope='module')
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
        yield chromium
        chromium.close()


@contextlib.contextmanager
def jupyterlab(lab: Path, folder: Path, log: Path):
    "JupyterLab on 127.0.0.1 over `lab` (its state under `folder`): yields the address of a notebook with its token."
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(folder / 'jupyter_config'), 'HF_HUB_OFFLINE': '1'}
    server = subprocess.Popen(
        [
            str(BIN / 'jupyter'),
            'lab',
            '--no-browser',
            '--ip=127.0.0.1',
            f'--port={port}',
            f'--IdentityProvider.token={token}',
            f'--ServerApp.root_dir={lab}',
            '--allow-root',
            f'--LabApp.workspaces_dir={folder / "workspaces"}',
        ],
        stdout=open(log, 'w'),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.time() + 90
        while True:  # up when its API answers
            try:
                urllib.request.urlopen(f'http://127.0.0.1:{port}/api/status?token={token}', timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, log.read_text()
                time.sleep(0.5)
        yield lambda name: f'http://127.0.0.1:{port}/lab/tree/{name}?token={token}'
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    assert server.poll() is not None


def run_first_cell(page, rendered, tmp_path: Path) -> None:
    "Run a notebook's first cell once the kernel is connected, until `rendered` (a locator) shows."
    page.locator('.jp-Notebook').first.wait_for(timeout=60_000)
    page.get_by_text('Python 3 (mtc_nb) | Idle').first.wait_for(timeout=90_000)  # the kernel is connected
    for attempt in range(3):  # keys sent before the kernel is connected are lost: send them again
        page.locator('.jp-Cell .jp-InputPrompt').first.click()  # the cell, in command mode
        page.keyboard.press('Control+Enter')  # run it
        try:
            rendered.first.wait_for(timeout=60_000)
            return
        except playwright.TimeoutError:
            page.screenshot(path=str(tmp_path / f'attempt_{attempt}.png'), full_page=True)
    raise AssertionError(f"the widget never rendered: see {tmp_path}")


def test_the_feature_inspector_live_in_jupyterlab(run, browser, tmp_path):
    folder, lab = run
    with jupyterlab(lab, folder, tmp_path / 'jupyterlab.log') as address:
        page = browser.new_page(viewport={'width': 1400, 'height': 1000})
        page.goto(address('inspect.ipynb'))
        info = page.locator('.mtc-feature-info')
        run_first_cell(page, info, tmp_path)
        before = info.first.inner_text()
        assert 'latent' in before and 'error ratio' in before
        page.locator('.mtc-latent select').select_option(index=1)
        page.wait_for_function(
            "(old) => document.querySelector('.mtc-feature-info').innerText !== old", arg=before, timeout=30_000
        )
        after = info.first.inner_text()
        assert after != before and 'latent' in after  # another latent, another view
        page.screenshot(path=str(tmp_path / 'feature_inspector.png'), full_page=True)
        assert (tmp_path / 'feature_inspector.png').stat().st_size > 10_000


def test_the_static_html_shows_the_preview(run, browser, tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from mtc_nb.reproduce import render_html

    folder, lab = run
    executed = tmp_path / 'inspect.ipynb'
    nb = nbformat.read(lab / 'inspect.ipynb', as_version=4)
    NotebookClient(nb, kernel_name='python3', timeout=300, resources={'metadata': {'path': str(lab)}}).execute()
    nbformat.write(nb, executed)
    assert 'widgets' in nb.metadata  # the widget state is saved with the notebook
    page = browser.new_page()
    page.goto(render_html(executed).as_uri())
    preview = page.locator('.mtc-preview')
    preview.first.wait_for(timeout=30_000)
    assert 'latent' in preview.first.inner_text()
    widths = page.locator('.mtc-preview img').evaluate_all('images => images.map(i => i.naturalWidth)')
    assert len(widths) == 2 and min(widths) > 100  # the contact sheet and the histogram, decoded
    page.screenshot(path=str(tmp_path / 'static_preview.png'), full_page=True)


def pages_of(own_run) -> list:
    """Every HTML page the own-folders run wrote (each stage's, offline and after the LMM), and the benchmark summary
    as nbconvert renders Markdown."""
    from nbconvert.filters import markdown2html

    root = own_run['root']
    pages = sorted((own_run['offline'] / 'runs').glob('*.html')) + sorted(
        (root / 'data' / 'paper' / 'runs').glob('*.html')
    )
    summary = root / 'summary.html'
    summary.write_text(markdown2html((root / 'fig' / 'benchmark_summary.md').read_text()), encoding='utf-8')
    return pages + [summary]


def test_no_name_runs_in_a_readers_browser(own_run, browser):
    "Folder and file names, CSV cells and LMM replies full of markup: opening every page opens no dialog, runs nothing."
    pages = pages_of(own_run)
    assert len(pages) >= 9
    for page_file in pages:
        page = browser.new_page()
        dialogs = []
        page.on('dialog', lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(page_file.as_uri(), wait_until='load')
        page.wait_for_timeout(300)  # an onerror handler fires once its image has failed to load
        assert dialogs == [], (page_file.name, dialogs)
        assert page.evaluate('window.__mtc_pwned') is None, page_file.name
        if page_file.name in ('09_benchmark.html', 'summary.html'):
            assert 'onerror=alert(1)' in page.inner_text('body')  # the name is there, as text
        page.close()


def test_the_annotator_in_jupyterlab_keeps_its_labels_across_a_reload(browser, tmp_path):
    "Label by click and by key in JupyterLab, reload the page: the labels are on disk and the widget resumes."
    from PIL import Image

    gen = tmp_path / 'gen'
    gen.mkdir()
    for i in range(3):
        Image.new('RGB', (48, 48), (80 * i, 90, 160)).save(gen / f'{i}.png')
    lab = tmp_path / 'lab'
    lab.mkdir()
    source = f"from mtc_nb.annotate import Annotator\nannotator = Annotator({str(gen)!r}, seed=0).show()"
    nb = notebook(tmp_path)
    nb['cells'][0]['source'] = [source]
    (lab / 'label.ipynb').write_text(json.dumps(nb))
    labels = gen / 'labels.csv'
    rows = lambda: len(labels.read_text().splitlines()) - 1 if labels.exists() else 0
    with jupyterlab(lab, tmp_path, tmp_path / 'jupyterlab.log') as address:
        page = browser.new_page(viewport={'width': 1400, 'height': 1000})
        page.goto(address('label.ipynb'))
        progress = page.locator('.mtc-annotator-progress')
        run_first_cell(page, progress, tmp_path)
        assert '0 of 3 labelled' in progress.first.inner_text()
        page.get_by_role('button', name='implausible (i)').first.click()
        page.wait_for_function("() => document.querySelector('.mtc-annotator-progress').innerText.includes('1 of 3')")
        page.get_by_placeholder('type p, i, s, u or 0-9 here').first.fill('p')  # the keyboard path
        page.wait_for_function("() => document.querySelector('.mtc-annotator-progress').innerText.includes('2 of 3')")
        assert rows() == 2  # on disk at once
        page.reload()
        progress = page.locator('.mtc-annotator-progress')
        run_first_cell(page, progress, tmp_path)
        assert '2 of 3 labelled' in progress.first.inner_text()  # resumed from the file
    import pandas as pd

    assert sorted(pd.read_csv(labels).label) == ['implausible', 'plausible']
