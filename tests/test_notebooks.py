"""Every notebook in nbs/, executed by nbdev's runner (smoke profile), one pytest case each, in reading order."""
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_notebook  # renamed: pytest must not collect it

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))

def test_there_are_notebooks():
    assert {'00_core', '01_scenes', '02_encoders', '03_classifier', 'index'} <= {p.stem for p in NOTEBOOKS}

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(nb):
    ok, secs = run_notebook(nb, skip_flags=['notest'], basepath=ROOT)
    assert ok, f"{nb.name} failed (traceback above)"
