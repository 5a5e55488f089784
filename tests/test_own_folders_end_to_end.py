"""The paper's setting end to end on a researcher's own folders of real photographs (`conftest.own_run`): `mtc
reproduce`'s runner through every stage notebook with the offline interpreter, `mtc label` after it, then an LMM that
answers in markup. What a user sees: every stage completes, every file left out is named, every name is escaped."""

import json

import pandas as pd
from conftest import HOSTILE


def test_every_stage_completes_and_writes_its_page(own_run):
    runs = own_run['offline'] / 'runs'
    for stage in ('01_scenes', '02_encoders', '03_classifier', '05_dictionaries', '08_failure_modes', '09_benchmark'):
        assert (runs / f'{stage}.ipynb').exists() and (runs / f'{stage}.html').exists(), stage


def test_the_dataset_section_describes_the_folders(own_run):
    dataset = json.loads((own_run['offline'] / 'results.json').read_text())['dataset']
    assert 'n_modes' not in dataset and 'n_categories' not in dataset  # the embedded world's, not the user's
    assert 'your folders' in dataset['source'] and dataset['n_images'] == 41


def test_every_file_left_out_of_the_class_folders_is_named(own_run):
    skipped = json.loads((own_run['root'] / 'data' / 'paper' / 'scenes' / 'skipped.json').read_text())
    reasons = {s['file'].rsplit('/', 1)[-1]: s['reason'] for s in skipped}
    assert 'not valid UTF-8' in reasons['caf\\xe9.png']
    assert 'cannot decode' in reasons['phone.heic'] and 'link to nothing' in reasons['dangling.png']


def test_without_names_the_benchmark_reads_unnamed_detectors(own_run):
    stage = json.loads((own_run['offline'] / 'benchmark' / 'stage.json').read_text())
    problems = {p['generator']: p['problem'] for p in stage['problems']}
    assert 'no image file' in problems['genEmpty'] and 'could be read' in problems['genBroken']
    assert any('maybe' in p['problem'] for p in stage['problems'])  # the side tables' mistakes, each named
    summary = (own_run['offline'] / 'benchmark' / 'summary.md').read_text()
    assert 'genA' in summary and 'genEmpty' in summary and 'genBroken' in summary
    if stage['unnamed']:  # unnamed latents that detect implausibility: their sheets and how to name them
        assert '## Unnamed features' in summary and 'lmm_base_url URL' in summary
        assert all(sheet is None or sheet.endswith('.png') for sheet in stage['unnamed'].values())
    else:  # none detects anything on the labelled images: the summary says why
        assert '## Features left out' in summary or 'No failure feature entered' in summary


def test_no_name_reaches_the_summary_raw(own_run):
    for summary in (own_run['offline'] / 'benchmark' / 'summary.md', own_run['root'] / 'fig' / 'benchmark_summary.md'):
        text = summary.read_text()
        assert '<img' not in text and '<script' not in text and '<svg' not in text, summary
    assert '&lt;img src=x onerror=alert\\(1\\)&gt;' in (own_run['root'] / 'fig' / 'benchmark_summary.md').read_text()


def test_mtc_label_works_after_the_run(own_run):
    out, err = own_run['label']
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 8 and all(0 <= line['implausibility'] <= 1 for line in lines)


def test_the_lmm_run_names_features_and_the_benchmark_reads_them(own_run):
    bench = own_run['root'] / 'data' / 'paper' / 'benchmark'
    candidates = pd.concat([pd.read_parquet(bench / 'features.parquet'), pd.read_parquet(bench / 'excluded.parquet')])
    assert len(candidates) and candidates.name.str.contains('the **box** floats', regex=False).all()
    assert HOSTILE['error'].split(' the ')[0] in candidates.name.iloc[0]  # the reply's markup kept as text, one line
    table = pd.read_parquet(bench / 'table.parquet')
    assert set(table.generator) == {'genA', HOSTILE['generator'], HOSTILE['generator_flag']}
