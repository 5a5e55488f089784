"""Build the docs site (`make docs`): the README as the home page, the docs pages, every notebook with its outputs and
the API reference, with navigation and search, by Sphinx with myst-nb, offline.

    .venv/bin/python docs/build_site.py [--profile smoke]      # -> docs/_build/html/index.html

The stage notebooks are shown as the profile's run executed them (`data/<profile>/runs/`, made by `mtc reproduce`);
the library notebooks are executed while the site is built (their self-checks included), on the same profile."""

import argparse, json, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / 'docs' / '_site'  # the assembled Sphinx source (not committed)
OUT = ROOT / 'docs' / '_build' / 'html'
PAGES = ['method', 'teaching', 'results', 'peers', 'decisions', 'running', 'notebooks']

CONF = '''
project = "mtc_nb"
author = "mtc_nb contributors"
extensions = ["myst_nb", "sphinx.ext.autodoc"]
myst_enable_extensions = ["dollarmath"]
nb_execution_mode = "auto"           # notebooks saved without outputs run while the site is built
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_merge_streams = True
autodoc_member_order = "bysource"
html_theme = "furo"
html_title = "mtc_nb"
exclude_patterns = ["_build", "figures/*.md"]
autodoc_inherit_docstrings = False  # torch.nn.Module.forward and friends: their docstrings are not ours
suppress_warnings = ["myst.header", "myst.xref_missing", "mystnb.unknown_mime_type", "misc.highlighting_failure"]
'''


def page_links(text: str) -> str:
    "The repository's relative links as the site's: docs/NAME.md -> NAME.md, ../figures/ and figures/ -> figures/."
    text = re.sub(r'\]\(docs/([\w-]+)\.md\)', r'](\1.md)', text)
    text = text.replace('](../figures/', '](figures/')
    site_name = lambda m: f"]({m.group(1).lower().replace('/', '_')}.md)"  # CHANGELOG.md -> changelog.md, ...
    return re.sub(r'\]\((CHANGELOG|LICENSE|data/README)(\.md)?\)', site_name, text)


def notebook_for_site(src: Path, runs: Path) -> dict:
    "A notebook as the site shows it: the profile's executed copy of a stage notebook, else the source."
    executed = runs / src.name
    nb = json.loads((executed if executed.exists() else src).read_text())
    nb.setdefault('metadata', {})['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    return nb


def assemble(profile: str) -> None:
    shutil.rmtree(SOURCE, ignore_errors=True)
    (SOURCE / 'notebooks').mkdir(parents=True)
    shutil.copytree(ROOT / 'figures', SOURCE / 'figures')
    (SOURCE / 'conf.py').write_text(CONF)
    readme = (ROOT / 'README.md').read_text().split('\n', 2)[2]  # without the "built from" comment
    tree = ['', '```{toctree}', ':hidden:', ':caption: Documentation', '']
    tree += [*PAGES, 'notebooks/index', 'api', 'changelog', 'data_readme', 'license', '```', '']
    (SOURCE / 'index.md').write_text(page_links(readme) + '\n'.join(tree))
    for name in PAGES:
        (SOURCE / f'{name}.md').write_text(page_links((ROOT / 'docs' / f'{name}.md').read_text()))
    (SOURCE / 'changelog.md').write_text(page_links((ROOT / 'CHANGELOG.md').read_text()))
    (SOURCE / 'data_readme.md').write_text(page_links((ROOT / 'data' / 'README.md').read_text()))
    (SOURCE / 'license.md').write_text('# License\n\n```\n' + (ROOT / 'LICENSE').read_text() + '```\n')
    runs = ROOT / 'data' / profile / 'runs'
    notebooks = sorted(p for p in (ROOT / 'nbs').glob('*.ipynb') if p.stem != 'index')
    for p in notebooks:
        (SOURCE / 'notebooks' / p.name).write_text(json.dumps(notebook_for_site(p, runs)))
    listing = ['# The notebooks', '', 'Each notebook as the `' + profile + '` profile runs it.', '', '```{toctree}', '']
    (SOURCE / 'notebooks' / 'index.md').write_text('\n'.join(listing + [p.stem for p in notebooks] + ['```', '']))
    library = ROOT / 'mtc_nb'
    modules = sorted(
        '.'.join(p.relative_to(library).with_suffix('').parts) for p in library.rglob('*.py') if p.stem[0] != '_'
    )
    api = ['# API reference', '']
    for m in modules:
        api += [f'## `mtc_nb.{m}`', '', '```{eval-rst}', f'.. automodule:: mtc_nb.{m}', '   :members:', '```', '']
    (SOURCE / 'api.md').write_text('\n'.join(api))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--profile', default='smoke', help="whose executed stage notebooks the site shows")
    a = ap.parse_args()
    assemble(a.profile)
    shutil.rmtree(OUT, ignore_errors=True)
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-j', '1', str(SOURCE), str(OUT)]
    subprocess.run(cmd, check=True, cwd=ROOT / 'nbs')  # the notebooks run where they live: their paths hold
    print(f"built {OUT / 'index.html'}")


if __name__ == '__main__':
    main()
