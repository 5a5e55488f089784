"""What a reader meets, counted: the README's words, the exported cells' lengths, the notebooks' definitions followed
by an example, and the docs pages built, each beside the goal of issue #37.

    python benchmarks/readability.py [--site docs/_build/html]
"""

from __future__ import annotations
import argparse, json, re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOALS = {'readme_words': 1500, 'median_cell_lines': 15, 'max_cell_lines': 60}


def readme_words(text: str) -> int:
    "Words of the README outside code blocks and HTML comments (what a reader reads as prose and tables)."
    text = re.sub(r'```.*?```', '', text, flags=re.S)
    text = re.sub(r'<!--.*?-->', '', text, flags=re.S)
    return len(re.findall(r"[A-Za-z0-9][\w'’.-]*", text))


def cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text())['cells']


def source(cell: dict) -> str:
    return ''.join(cell['source'])


def exported_lengths(notebooks) -> dict[str, list[int]]:
    "Lines of every `#| export` cell, per notebook (the directive line not counted)."
    out = {}
    for nb in notebooks:
        sizes = [len(source(c).splitlines()) - 1 for c in cells(nb) if source(c).startswith('#| export')]
        if sizes:
            out[nb.name] = sizes
    return out


def definitions_with_example(notebook: Path) -> tuple[int, int]:
    "(exported definitions, those whose next code cell is an untagged example, not a test) of one notebook."
    code = [c for c in cells(notebook) if c['cell_type'] == 'code']
    total = shown = 0
    for i, c in enumerate(code):
        if not source(c).startswith('#| export') or not re.search(r'^(def|class) ', source(c), flags=re.M):
            continue
        total += 1
        after = code[i + 1] if i + 1 < len(code) else None
        if after is None or source(after).startswith('#| export'):
            continue
        shown += 'self-check' not in (after['metadata'].get('tags') or [])
    return total, shown


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--site', default=str(ROOT / 'docs' / '_build' / 'html'), help='the built docs site, if any')
    args = ap.parse_args()
    notebooks = sorted((ROOT / 'nbs').glob('*.ipynb'))
    words = readme_words((ROOT / 'README.md').read_text())
    print(f"README: {words:,} words (goal ≤ {GOALS['readme_words']:,})")
    lengths = exported_lengths(notebooks)
    every = np.concatenate([np.array(v) for v in lengths.values()])
    over = {name: [n for n in v if n > GOALS['max_cell_lines']] for name, v in lengths.items()}
    print(
        f"exported cells: {len(every)}, median {np.median(every):.0f} lines (goal ≤ {GOALS['median_cell_lines']}), "
        f"max {every.max()} (goal ≤ {GOALS['max_cell_lines']}), {sum(map(len, over.values()))} over "
        f"{GOALS['max_cell_lines']}: " + ', '.join(f"{k} {v}" for k, v in over.items() if v)
    )
    print('definitions followed by an untagged example, per notebook:')
    for nb in notebooks:
        total, shown = definitions_with_example(nb)
        if total:
            print(f"  {nb.name:<28}{shown:>3} of {total}")
    site = Path(args.site)
    pages = sorted(site.rglob('*.html')) if site.exists() else []
    built = {p.stem for p in pages}
    missing = [nb.stem for nb in notebooks if nb.stem not in built]
    print(
        f"docs site {site}: {len(pages)} pages; notebooks without a page: {', '.join(missing) or 'none'}"
        if pages
        else f"docs site {site}: not built (make docs)"
    )
