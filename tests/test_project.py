"""The project's own consistency: packaging, environment.yml, README, settings, the nbdev set-up."""

import configparser, re, tomllib
from pathlib import Path
import pytest
from mtc_nb.results import build_readme
from mtc_nb.core import load_profile
from mtc_nb.manifests import STAGES

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())


def test_torch_is_pinned_exactly():
    deps = PYPROJECT['project']['dependencies']
    assert 'torch==2.13.0' in deps
    assert not [d for d in deps if re.match(r'(torchvision|timm|open_clip)', d)], 'never beside torch 2.13.0'


def test_nbdev_keeps_papermill_tags():
    assert PYPROJECT['tool']['nbdev']['allowed_cell_metadata_keys'] == ['tags']


def test_environment_yml_does_not_drift():
    env = (ROOT / 'environment.yml').read_text()
    assert re.search(r'python=3\.11\b', env)
    pins = re.findall(r'^\s*-\s*(torch==[\w.]+)\s*$', env, re.M)
    assert pins == [d for d in PYPROJECT['project']['dependencies'] if d.startswith('torch')]
    assert re.search(r'^\s*-\s*-e \.\[dev\]\s*$', env, re.M), 'environment.yml must install the project itself'
    assert PYPROJECT['project']['requires-python'] == '>=3.11'


def test_readme_is_built_from_index():
    assert (ROOT / 'README.md').read_text() == build_readme(ROOT / 'nbs' / 'index.ipynb'), 'run `mtc readme`'


def test_docs_pages_are_built_from_their_sources_and_their_links_resolve():
    from mtc_nb.results import build_docs

    pages = build_docs(ROOT)
    assert {p.name for p in pages} >= {'results.md', 'peers.md', 'running.md', 'notebooks.md'}
    for path, text in pages.items():
        assert path.read_text() == text, f"{path.name}: run `mtc readme`"
    for page in [ROOT / 'README.md', *pages]:  # every relative link of the README and the pages names a file
        for target in re.findall(r'\]\((?!https?:)([^)#\s]+)', page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_is_a_short_user_document():
    words = len(re.sub(r'```.*?```', '', (ROOT / 'README.md').read_text(), flags=re.S).split())
    assert words <= 1500, f"README.md has {words} words outside its code blocks (at most 1,500: details go to docs/)"
    assert (ROOT / 'LICENSE').exists() and (ROOT / 'CHANGELOG.md').exists()


def test_readme_gives_the_two_commands():
    text = (ROOT / 'README.md').read_text()
    assert 'make reproduce' in text and 'make test' in text
    mk = (ROOT / 'Makefile').read_text()
    assert re.search(r'^reproduce:', mk, re.M) and re.search(r'^test:', mk, re.M)


def test_ci_calls_the_readme_test_command():
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()


def test_profiles_exist_and_parse():
    cp = configparser.ConfigParser()
    cp.read(ROOT / 'settings.ini')
    assert {'smoke', 'default', 'paper'} <= set(cp.sections())
    for name in cp.sections():
        cfg = load_profile(name)
        assert 0 < cfg.n_images and abs(sum(cfg.splits) - 1) < 1e-9
    assert load_profile('smoke').n_images < load_profile('default').n_images


def test_stage_notebooks_have_a_parameters_cell():
    import json

    for s in STAGES:
        nb = json.loads((ROOT / 'nbs' / f'{s}.ipynb').read_text())
        tagged = [c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1 and "profile = 'smoke'" in ''.join(tagged[0]['source']), s


def test_mtc_command_rejects_unknown_profile():
    from mtc_nb.cli import main

    with pytest.raises(SystemExit, match='Unknown profile'):  # a message, not a traceback
        main(['reproduce', '--profile', 'no_such_profile'])


def test_stage_notebooks_tag_their_self_checks():
    "A library self-check never aborts `mtc reproduce`: every asserting cell before a stage's parameters is tagged."
    import json
    from mtc_nb.reproduce import SELF_CHECK_TAG

    for s in STAGES:
        cells = json.loads((ROOT / 'nbs' / f'{s}.ipynb').read_text())['cells']
        tags = [c.get('metadata', {}).get('tags', []) for c in cells]
        first_stage_cell = next(i for i, t in enumerate(tags) if 'parameters' in t)
        for c, t in zip(cells[:first_stage_cell], tags):
            code = ''.join(c['source'])
            if (
                c['cell_type'] == 'code'
                and ('assert' in code or 'test_' in code)
                and not code.startswith(('#| export', '#| hide'))
            ):
                assert SELF_CHECK_TAG in t, (s, code[:80])


def test_a_variant_runs_beside_the_profiles_own_run():
    from mtc_nb.cli import variant_settings

    cfg = load_profile('tutorial', **variant_settings('k16'), dict_k=16, dict_k_sweep=[16])
    assert cfg.run_dir == ROOT / 'data' / 'variants' / 'k16' / 'tutorial'
    assert cfg.path('figures_dir') == ROOT / 'data' / 'variants' / 'k16' / 'tutorial' / 'figures'
    assert load_profile('tutorial').run_dir == ROOT / 'data' / 'tutorial'  # the class's first run stays where it is
    with pytest.raises(ValueError, match='variant'):
        variant_settings('../../etc')
