"""Stage manifests: a changed setting reruns exactly the stages downstream of it, a killed run resumes where it
stopped with the results of an uninterrupted one, and `mtc reproduce` skips what is current."""

import json, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
from conftest import run_chain, tiny_profile
from mtc_nb.manifests import UPSTREAM, read_manifest, stage_state, StaleStageError

STAGES = list(UPSTREAM)
ONE_SETTING = {
    'scenes': ('violation_rate', 0.4),
    'encoder': ('finetune_lr', 0.002),
    'classifier': ('head_epochs', 3),
    'dictionaries': ('dict_epochs', 3),
    'features': ('feature_top_n', 7),
    'benchmark': ('benchmark_bootstrap', 150),
}


def made_at(cfg) -> dict:
    "When each stage's manifest was written."
    return {s: read_manifest(cfg, s)['created'] for s in STAGES}


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp('base')
    cfg = tiny_profile(folder)
    return cfg, run_chain(cfg), made_at(cfg)


@pytest.mark.parametrize('changed', STAGES)
def test_one_changed_setting_reruns_exactly_the_stages_downstream(base, changed, tmp_path):
    cfg0, _, before = base
    shutil.copytree(cfg0.run_dir.parent, tmp_path / 'data')
    cfg = tiny_profile(tmp_path)
    assert made_at(cfg) == before and all(stage_state(cfg, s)[0] for s in STAGES)  # a copy is current as it is
    name, value = ONE_SETTING[changed]
    cfg = cfg.replace(**{name: value})
    stale = [s for s in STAGES if not stage_state(cfg, s)[0]]
    downstream = STAGES[STAGES.index(changed) :]
    assert stale == downstream, stale
    assert name in stage_state(cfg, changed)[1]  # the reason names the setting
    run_chain(cfg)
    after = made_at(cfg)
    assert [s for s in STAGES if after[s] != before[s]] == downstream  # upstream outputs were reused, not recomputed
    assert all(stage_state(cfg, s)[0] for s in STAGES)


def test_a_stage_refuses_outputs_of_other_settings(base, tmp_path):
    cfg0, _, _ = base
    shutil.copytree(cfg0.run_dir.parent, tmp_path / 'data')
    cfg = tiny_profile(tmp_path, head_epochs=3)
    from mtc_nb.stages.dictionaries import dictionaries_stage

    with pytest.raises(StaleStageError, match=r"head_epochs: 2 → 3"):
        dictionaries_stage(cfg, progress=False)


def test_a_rerun_computes_nothing(base):
    cfg, results, before = base
    again = run_chain(cfg)
    assert made_at(cfg) == before  # every stage reused: no manifest rewritten
    assert [r['name'] for r in again['dictionaries']] == [r['name'] for r in results['dictionaries']]


def test_every_dictionary_is_scored_against_the_planted_concepts(base):
    "Ground truth and the paper's relevance with the simulated namer, for every family alike (the claims read them)."
    import pandas as pd
    from mtc_nb.interpret import NAMER_MISREAD
    from mtc_nb.stages.features import summarise_features

    cfg, results, _ = base
    rows, _ = results['features']
    for row in rows:
        levels = row['ground_truth']['per_level']
        assert {'category', 'mode', 'variant', 'all'} <= set(levels), row['name']
        assert 0 <= levels['all']['f1'] <= 1 and -1 <= levels['all']['mcc'] <= 1, row['name']
        assert set(row['paper_metrics']) == {f'{e:g}' for e in NAMER_MISREAD}, row['name']
    summary = summarise_features(pd.DataFrame([r for r in rows if r['kind'] == rows[0]['kind']]))
    assert summary['ground_truth']['per_level']['all']['f1']['mean'] >= 0
    assert summary['paper_metrics']['0.1']['n_asked'] >= 0
    # a stage read back from its manifest holds NaN as null (a rerun of notebook 08 whose stage is current)
    stored = [r for r in read_manifest(cfg, 'features')['rows'] if r['kind'] == rows[0]['kind']]
    stored[0]['paper_metrics']['0.1']['accuracy'] = None
    stored[0]['ground_truth']['per_level']['all']['absorption'] = None
    again = summarise_features(pd.DataFrame(stored))
    assert again['paper_metrics']['0.1']['n_asked'] == summary['paper_metrics']['0.1']['n_asked']


KILLED_RUN = """
import json, sys
sys.path.insert(0, {tests!r})
from conftest import run_chain, tiny_profile
from pathlib import Path
run_chain(tiny_profile(Path({folder!r}), **json.loads({kw!r})))
"""


def test_a_run_killed_mid_stage_resumes_with_the_same_results(tmp_path):
    kw = {'seeds': [0, 1, 2], 'dict_epochs': 6, 'dict_workers': 2}  # groups train in two worker processes
    killed = tiny_profile(tmp_path / 'killed', **kw)
    code = KILLED_RUN.format(tests=str(Path(__file__).parent), folder=str(tmp_path / 'killed'), kw=json.dumps(kw))
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = killed.run_dir / 'dictionaries'
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:  # kill it once a first dictionary is complete
        if any('stage_fingerprint' in p.read_text() for p in root.glob('*/config.json')):
            break
        time.sleep(0.05)
    assert proc.poll() is None, 'the run ended before it could be killed mid-stage'
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_manifest(killed, 'dictionaries') is None  # killed mid-stage: not complete
    listing = lambda: {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.glob('*/*')}
    before = listing()
    time.sleep(3)
    assert listing() == before  # the workers died with the run: nothing trains on behind it
    finished = {  # a checkpoint is finished once its config is written, after its weights (a kill may fall between)
        p.parent.name: p.stat().st_mtime_ns
        for p in root.glob('*/weights.safetensors')
        if (p.parent / 'config.json').exists() and 'stage_fingerprint' in (p.parent / 'config.json').read_text()
    }
    assert finished
    resumed = run_chain(killed)
    kept = {n: (root / n / 'weights.safetensors').stat().st_mtime_ns for n in finished}
    assert kept == finished  # the dictionaries finished before the kill were not trained again
    clean = run_chain(tiny_profile(tmp_path / 'clean', **kw))
    for stage in ('dictionaries', 'features'):
        a, b = resumed[stage], clean[stage]
        rows_a, rows_b = (a[0], b[0]) if stage == 'features' else (a, b)
        assert [r['name'] for r in rows_a] == [r['name'] for r in rows_b]
        for ra, rb in zip(rows_a, rows_b):  # the same machine: the same results (to JSON's rounding)
            for key in ('fvu', 'l0', 'dead_fraction', 'relevance_count', 'mode_coverage'):
                if key in rb:
                    assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (stage, ra['name'], key)


def test_mtc_reproduce_skips_what_is_current_and_reruns_what_changed(tmp_path, capfd):
    """The papermill chain: executed copies, injected parameters, skips with a reason, --force, a changed setting; the
    output (the kernels' included, hence `capfd`) has no warning of an unencrypted kernel."""
    from mtc_nb.reproduce import run_stages

    kw = {'data_dir': str(tmp_path / 'data'), 'figures_dir': str(tmp_path / 'fig')}
    from conftest import TINY

    params = {**TINY, **kw}
    first = run_stages('smoke', **params)
    assert [p.stem for p in first] == [
        '01_scenes',
        '02_encoders',
        '03_classifier',
        '05_dictionaries',
        '08_failure_modes',
        '09_benchmark',
    ]
    nb = json.loads(first[0].read_text())
    injected = [c for c in nb['cells'] if 'injected-parameters' in c.get('metadata', {}).get('tags', [])]
    assert injected and 'profile = "smoke"' in ''.join(injected[0]['source'])
    assert not [c for c in nb['cells'] if 'self-check' in c.get('metadata', {}).get('tags', [])]  # left to make test
    assert (tmp_path / 'fig' / 'scenes_gallery.png').exists() and (tmp_path / 'fig' / 'results.json').exists()
    results = json.loads((tmp_path / 'fig' / 'results.json').read_text())
    assert results['machine']['cpu'] and results['machine']['torch']
    stamps = {p.stem: p.stat().st_mtime_ns for p in first}
    assert 'without encryption' not in capfd.readouterr().err  # the kernels talk over Unix sockets, not TCP
    run_stages('smoke', **params)
    out = capfd.readouterr().out
    assert out.count('skipped, unchanged') == 6, out
    assert {p.stem: p.stat().st_mtime_ns for p in first} == stamps
    run_stages('smoke', **{**params, 'feature_top_n': 7})
    out = capfd.readouterr().out
    assert out.count('skipped, unchanged') == 4 and 'running stage 08_failure_modes' in out and 'feature_top_n' in out
    assert 'running stage 09_benchmark' in out
    run_stages('smoke', ['03_classifier'], force=True, **{**params, 'feature_top_n': 7})
    assert 'running stage 03_classifier (profile smoke): forced' in capfd.readouterr().out
    with pytest.raises(ValueError, match='no_such_setting'):
        run_stages('smoke', ['01_scenes'], no_such_setting=1)


def test_the_device_setting_places_the_work_not_the_results(base, tmp_path):
    """device = cpu set explicitly trains the same dictionaries as auto on a machine without a GPU, where a GPU asked
    for is a clear error. With a GPU, the stages the CPU completed are current for it (the device is in no
    fingerprint), and dictionaries it trains from them agree with the CPU's within the spread of training."""
    import torch
    from mtc_nb.stages.dictionaries import dictionaries_stage

    cfg, results, _ = base
    cpu_cfg = tiny_profile(tmp_path / 'cpu', device='cpu')
    on_cpu = run_chain(cpu_cfg, upto='dictionaries')['dictionaries']
    if not torch.cuda.is_available():  # auto is the CPU: the same code path
        assert len(on_cpu) == len(results['dictionaries']) > 0
        for a, b in zip(on_cpu, results['dictionaries']):
            assert a['name'] == b['name'] and a['fvu'] == pytest.approx(b['fvu'], rel=1e-4, abs=1e-6)
        with pytest.raises(ValueError, match='no CUDA device'):
            run_chain(tiny_profile(tmp_path / 'gpu', device='cuda'), upto='encoder')
        return
    gpu_cfg = tiny_profile(tmp_path / 'cpu', device='cuda')
    completed = STAGES[: STAGES.index('dictionaries') + 1]
    assert all(stage_state(gpu_cfg, s)[0] for s in completed)  # what the CPU made is current on the GPU
    on_gpu = dictionaries_stage(gpu_cfg, force=True, progress=False)
    assert [a['name'] for a in on_gpu] == [b['name'] for b in on_cpu]
    for a, b in zip(on_gpu, on_cpu):
        # retrained on another MKL code path (COMPATIBLE, AVX2, SSE4_2) these dictionaries' FVU moved by under 1e-8
        # of itself; a GPU sums in other orders and may break a BatchTopK tie the other way: 1% allows for that
        assert a['fvu'] == pytest.approx(b['fvu'], rel=0.01, abs=1e-5), (a['name'], a['fvu'], b['fvu'])


LOADED_RUN = """
import json, multiprocessing as mp, os, sys
os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})  # pinned to one CPU, as a scheduler or taskset may do
sys.path.insert(0, {tests!r})
from pathlib import Path


def burn(stop):
    while not stop.is_set():
        sum(range(10000))


if __name__ == '__main__':
    stop = mp.Event()
    burners = [mp.Process(target=burn, args=(stop,)) for _ in range(2)]  # and two busy processes beside it
    for b in burners:
        b.start()
    try:
        from conftest import run_chain, tiny_profile

        run_chain(tiny_profile(Path({folder!r}), **json.loads({kw!r})), upto='classifier')
    finally:
        stop.set()
"""


@pytest.mark.skipif(not hasattr(__import__('os'), 'sched_setaffinity'), reason='no CPU affinity on this system')
def test_a_run_under_load_and_pinned_to_one_cpu_is_the_same_run(tmp_path):
    "torch picks its threads from the CPUs a process may use: a stage fixes them (`threads`), so floats do not move."
    from safetensors.torch import load_file

    clean = tiny_profile(tmp_path / 'clean')
    run_chain(clean, upto='classifier')
    script = LOADED_RUN.format(tests=str(Path(__file__).parent), folder=str(tmp_path / 'loaded'), kw='{}')
    subprocess.run([sys.executable, '-c', script], check=True, timeout=600)
    loaded = tiny_profile(tmp_path / 'loaded')
    for part in ('encoder/weights.safetensors', 'encoder/h2.safetensors', 'classifier/weights.safetensors'):
        a, b = load_file(clean.run_dir / part), load_file(loaded.run_dir / part)
        assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a), part  # one machine, one code path


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)
