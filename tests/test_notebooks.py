"""Every notebook in nbs/, executed by nbdev's runner (smoke profile), one pytest case each, in reading order."""

import shutil
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_notebook  # renamed: pytest must not collect it
from mtc_nb.manifests import STAGES
from mtc_nb.core import load_profile

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / 'nbs').glob('*.ipynb'))
LIBRARY = ROOT / 'mtc_nb'
MODULES = sorted(
    '.'.join(p.relative_to(LIBRARY).with_suffix('').parts) for p in LIBRARY.rglob('*.py') if p.stem[0] != '_'
)


def test_there_are_notebooks():
    "Every stage notebook, and a notebook for every module of the library, is here."
    names = {p.stem for p in NOTEBOOKS}
    assert set(STAGES) <= names and 'index' in names
    exported = set()
    for p in NOTEBOOKS:
        text = p.read_text()
        exported |= {m for m in MODULES if f'#| default_exp {m}\\n' in text or f'#| default_exp {m}"' in text}
    assert exported == set(MODULES), set(MODULES) - exported


@pytest.fixture(scope='module', autouse=True)
def fresh_smoke_run():
    "The stage cells compute from scratch: no output of an earlier run (or another code path) is reused."
    shutil.rmtree(load_profile('smoke').run_dir, ignore_errors=True)


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(nb):
    ok, secs = run_notebook(nb, skip_flags=['notest'], basepath=ROOT)
    assert ok, f"{nb.name} failed (traceback above)"
