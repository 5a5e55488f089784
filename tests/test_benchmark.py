"""The benchmark stage and `mtc label` on small data: real generator folders beside the simulated panel,
unreadable files, missing artifacts."""

import io, json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from conftest import run_chain, tiny_profile, TINY
from mtc_nb.manifests import StaleStageError
from mtc_nb.cli import main
from mtc_nb.scoring import write_labels
from mtc_nb.panel import PANEL
from mtc_nb.cli import label
from mtc_nb.scenes import draw_attributes, render


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    """A tiny chain whose benchmark holds the simulated panel and two real generators' folders (one with prompts and
    labels)."""
    folder = tmp_path_factory.mktemp('bench')
    rng = np.random.default_rng(0)
    for gen in ('realA', 'realB'):
        (folder / 'generated' / gen).mkdir(parents=True)
        for i in range(8):
            mode = 'floating' if gen == 'realB' and i % 2 else None
            Image.fromarray(render(draw_attributes(rng, 'object'), mode, 32)).save(
                folder / 'generated' / gen / f'{i}.png'
            )
    (folder / 'generated' / 'realB' / 'prompts.csv').write_text(
        'file,prompt\n' + ''.join(f'{i}.png,p{i // 2}\n' for i in range(8))
    )
    (folder / 'generated' / 'realB' / 'labels.csv').write_text('file,label\n0.png,plausible\n1.png,implausible\n')
    (folder / 'generated' / 'realB' / 'broken.png').write_bytes(b'not an image at all')
    cfg = tiny_profile(folder, generated_root=str(folder / 'generated'))
    return cfg, run_chain(cfg)['benchmark']


def test_the_benchmark_measures_every_generator(bench):
    cfg, out = bench
    table = out['table']
    assert set(table.generator) == {g.name for g in PANEL} | {'realA', 'realB'}
    real = table[~table.simulated]
    assert real.true.isna().all() and set(real.n) == {8}  # no truth for real generators; the broken file is left out
    human = real[(real.generator == 'realB') & (real.level == 'overall')].human
    assert (human == 0.5).all()  # labels.csv: one of two implausible
    assert out['unreadable'] and out['unreadable'][0]['file'].endswith('broken.png')
    assert table[table.simulated].true.notna().all()
    assert set(out['summary']['generators']) == {g.name for g in PANEL}  # validation reads the panel only
    assert (cfg.run_dir / 'benchmark' / 'summary.md').read_text().count('(simulated)') >= len(PANEL)


def test_label_reports_features_and_unreadable_files(bench, tmp_path):
    cfg, out = bench
    kw = {
        **TINY,
        'data_dir': str(cfg.path('data_dir')),
        'figures_dir': str(cfg.fig_dir),
        'generated_root': str(cfg.path('generated_root')),
    }
    folder = cfg.path('generated_root') / 'realB'
    rows, unreadable = label([folder], 'smoke', **kw)
    assert len(rows) == 8 and [u[0] for u in unreadable] == [str(folder / 'broken.png')]
    assert all(0 <= r['implausibility'] <= 1 for r in rows)
    features = set(out['features'].feature)
    assert all(f['feature'] in features for r in rows for f in r['features'])
    images = out['images'].set_index('file')
    for r in rows:  # the labeller and the benchmark are one scoring function
        key = 'realB/' + r['file'].rsplit('/', 1)[1]
        assert r['implausibility'] == pytest.approx(images.implausibility[key], abs=1e-4)
        fired = {c.split(':', 1)[1] for c in images.columns if c.startswith('fires:') and images.loc[key, c]}
        assert {f['feature'] for f in r['features']} == fired
    buf = io.StringIO()
    write_labels(rows, unreadable, 'csv', buf)
    csv = pd.read_csv(io.StringIO(buf.getvalue()))
    assert len(csv) == 9 and csv.error.notna().sum() == 1
    args = ['label', str(folder / '0.png'), str(folder / 'broken.png'), '--profile', 'smoke']
    for k, v in kw.items():
        args += ['-p', k, ', '.join(map(str, v)) if isinstance(v, list) else str(v)]
    from contextlib import redirect_stdout, redirect_stderr

    out_buf, err_buf = io.StringIO(), io.StringIO()
    with redirect_stdout(out_buf), redirect_stderr(err_buf):
        main(args)
    lines = [json.loads(line) for line in out_buf.getvalue().splitlines()]
    assert lines[0]['file'].endswith('0.png') and 'error' in lines[1] and 'broken.png' in err_buf.getvalue()


def test_label_without_artifacts_names_the_stage_to_run(tmp_path):
    Image.new('RGB', (16, 16)).save(tmp_path / 'x.png')
    with pytest.raises(StaleStageError, match="stage 'benchmark'"):
        label([tmp_path / 'x.png'], 'smoke', data_dir=str(tmp_path / 'nothing'))
    with pytest.raises(FileNotFoundError, match='no such file'):
        label([tmp_path / 'missing.png'], 'smoke', data_dir=str(tmp_path / 'nothing'))


def test_a_labelled_sample_recalibrates_its_generator_and_flags_errors_beyond_the_calibration():
    "A generator whose classifier errs beyond every calibration style: its labels.csv moves its rate to the truth."
    from mtc_nb.benchmark import calibration_notes, measure

    rng = np.random.default_rng(0)
    cal_truth = rng.random(1000) < 0.5
    cal_fire = np.stack([np.where(cal_truth, rng.random(1000) < 0.95, rng.random(1000) < fpr) for fpr in (0.02, 0.06)])
    truth = rng.random(400) < 0.3  # two generators, 200 images each; the classifier fires on 30% of plausible ones
    fire = np.where(truth, rng.random(400) < 0.95, rng.random(400) < 0.3)[:, None]
    images = pd.DataFrame({'generator': np.repeat(['labelled', 'unlabelled'], 200), 'simulated': False})
    images['label'] = np.where(np.arange(400) < 40, truth.astype(float), np.nan)  # 40 labelled images of the first
    features = pd.DataFrame(columns=['kind', 'concept', 'name'])
    man_test = pd.DataFrame({'label': cal_truth.astype(int)})
    table = measure(images, fire, cal_fire[..., None], man_test, features, B=300, seed=0)
    rate = table[table.estimate == 'corrected'].set_index('generator')
    truth_of = {g: truth[images.generator == g].mean() for g in ('labelled', 'unlabelled')}
    assert abs(rate.prevalence['labelled'] - truth_of['labelled']) < 0.06
    assert rate.prevalence['unlabelled'] - truth_of['unlabelled'] > 0.12  # the calibration alone over-counts
    assert rate.ci_low['labelled'] <= truth_of['labelled'] <= rate.ci_high['labelled']
    assert rate.n_labelled.to_dict() == {'labelled': 40, 'unlabelled': 0}
    assert bool(rate.outside_calibration["labelled"]) is True
    assert rate.outside_calibration['unlabelled'] is None
    notes = '\n'.join(calibration_notes(table))
    assert '**labelled**: its labelled sample shows the classifier erring beyond every calibration style' in notes
    assert 'without a labelled sample: unlabelled' in notes
