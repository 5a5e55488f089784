"""A researcher's own folders, case by case (the fault suite, `pytest -m faults`): every bad input gets a message
naming its file or setting, the rest goes on, nothing earlier is lost; an LMM that fails is loud, bounded and never
sticks; two runs of one folder never interleave."""

import json, os

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from conftest import run_chain, tiny_profile, paper_profile
from mtc_nb.panel import index_generated
from mtc_nb.core import load_profile
from mtc_nb.manifests import read_manifest, StaleStageError
from mtc_nb.reproduce import run_lock, run_stages, RunLockedError
from mtc_nb.cli import main
from mtc_nb.interpret import LMMConfig, LMMInterpreter, LMMFatalError, MAX_PHRASE_CHARS, MAX_REPLY_CHARS
from mtc_nb.images import index_folders
from mtc_nb.testing import LocalChatServer
from test_lmm import images, table  # noqa: F401 (the LMM tests' images fixture and feature table)

pytestmark = pytest.mark.faults


def class_folders(root, n: int = 4):
    "human_correct/ and human_error/ with `n` small images each."
    for sub, shade in (('human_correct', 30), ('human_error', 200)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new('RGB', (16, 16), (shade + i, 0, 0)).save(root / sub / f'{i}.png')
    return root


def _non_utf8(folder):
    name = os.fsdecode(b'caf\xe9.png')  # Latin-1 bytes in a name: legal on Linux, refused by every UTF-8 writer
    Image.new('RGB', (16, 16)).save(folder / name)


def _dangling(folder):
    os.symlink(folder / 'gone.png', folder / 'dangling.png')


def _self_loop(folder):
    os.symlink(folder / 'loop.png', folder / 'loop.png')


def _folder_loop(folder):
    (folder / 'sub').mkdir()
    Image.new('RGB', (16, 16), (9, 9, 9)).save(folder / 'sub' / 'kept.png')
    os.symlink(folder, folder / 'sub' / 'back')


# what is written into human_error/ -> (the file reported, a word of its reason) or (a file kept, None)
FOLDER_CASES = {
    'gif': (lambda d: Image.new('RGB', (16, 16), (0, 90, 0)).save(d / 'anim.gif'), ('anim.gif', None)),
    'tiff': (lambda d: Image.new('RGB', (16, 16), (0, 0, 90)).save(d / 'scan.tif'), ('scan.tif', None)),
    'heic': (lambda d: (d / 'phone.heic').write_bytes(b'\x00\x00\x00\x18ftypheic'), ('phone.heic', 'cannot decode')),
    'text': (lambda d: (d / 'notes.txt').write_text('notes'), ('notes.txt', 'not an image file')),
    'non-utf8 name': (_non_utf8, ('caf\\xe9.png', 'not valid UTF-8')),
    'dangling link': (_dangling, ('dangling.png', 'link to nothing')),
    'link loop': (_self_loop, ('loop.png', 'loop')),
    'folder loop': (_folder_loop, ('sub/back', 'loop')),
}


@pytest.mark.parametrize('case', list(FOLDER_CASES))
def test_one_extension_policy_and_every_file_left_out_is_named(tmp_path, case):
    write, (name, word) = FOLDER_CASES[case]
    root = class_folders(tmp_path)
    write(root / 'human_error')
    manifest, skipped = index_folders(root, splits=(0.6, 0.2, 0.2))
    reasons = {s['file']: s['reason'] for s in skipped}
    json.dumps(skipped).encode('utf-8')  # every name is writable as it is reported
    if word is None:
        assert f'human_error/{name}' in set(manifest.file) and not skipped
    else:
        assert word in reasons[f'human_error/{name}'], reasons
        assert len(manifest) == 8 + (case == 'folder loop')  # the others go on (and the looped folder's image once)


def test_a_file_in_both_classes_is_left_out_not_fatal(tmp_path):
    root = class_folders(tmp_path, n=5)
    (root / 'human_error' / 'same.png').write_bytes((root / 'human_correct' / '0.png').read_bytes())
    manifest, skipped = index_folders(root, splits=(0.6, 0.2, 0.2))
    assert {s['file'] for s in skipped} == {'human_error/same.png', 'human_correct/0.png'} and len(manifest) == 9


def generators(root, tables: dict) -> pd.DataFrame:
    "genA (untouched) and genB with the side tables `tables` ({name: text}); returns index_generated's problems."
    for gen in ('genA', 'genB'):
        (root / gen).mkdir(parents=True)
        for i in range(3):
            Image.new('RGB', (16, 16), (i, 0, 0)).save(root / gen / f'{i}.png')
    for name, text in tables.items():
        (root / 'genB' / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return index_generated(root)


SIDE_TABLE_CASES = {  # tables of genB -> (a word of the problem or None, genB's labels of 0.png, 1.png, 2.png)
    'semicolons': ({'labels.csv': 'file;label\n0.png;implausible\n1.png;plausible\n'}, (None, [1, 0, None])),
    'case and spaces': ({'labels.csv': 'File,Label\n0.png, Implausible \n1.png,PLAUSIBLE\n'}, (None, [1, 0, None])),
    'unknown label': ({'labels.csv': 'file,label\n0.png,maybe\n1.png,plausible\n'}, ('maybe', [None, 0, None])),
    'missing column': ({'labels.csv': 'file,verdict\n0.png,plausible\n'}, ('needs the columns', [None] * 3)),
    'same row twice': (
        {'labels.csv': 'file,label\n0.png,plausible\n0.png,plausible\n'},
        ('more than once', [0, None, None]),
    ),
    'rows that differ': (
        {'labels.csv': 'file,label\n0.png,plausible\n0.png,implausible\n1.png,implausible\n'},
        ('differ', [None, 1, None]),
    ),
    'a file not there': ({'labels.csv': 'file,label\nnope.png,plausible\n'}, ('no image of the folder', [None] * 3)),
    'not UTF-8': ({'labels.csv': b'file,label\n\xff\xfe0.png,plausible\n'}, ('not a readable CSV', [None] * 3)),
    'empty': ({'labels.csv': ''}, ('not a readable CSV', [None] * 3)),
    'prompts twice': ({'prompts.csv': 'file,prompt\n0.png,a cat\n0.png,a dog\n'}, ('more than once', [None] * 3)),
}


@pytest.mark.parametrize('case', list(SIDE_TABLE_CASES))
def test_a_bad_side_table_is_reported_and_stops_no_generator(tmp_path, case):
    tables, (word, expected) = SIDE_TABLE_CASES[case]
    index, problems = generators(tmp_path, tables)
    assert set(index.generator) == {'genA', 'genB'} and len(index) == 6  # every image of both generators
    mine = [p['problem'] for p in problems if p['generator'] == 'genB']
    assert not [p for p in problems if p['generator'] == 'genA']
    if word is None:
        assert not mine
    else:
        assert any(word in p for p in mine), mine
    labels = index[index.generator == 'genB'].sort_values('file').label.tolist() if 'label' in index else [None] * 3
    assert [None if pd.isna(x) else int(x) for x in labels] == expected


def test_an_empty_generator_folder_is_named(tmp_path):
    (tmp_path / 'genE').mkdir()
    (tmp_path / 'genE' / 'readme.txt').write_text('nothing yet')
    index, problems = generators(tmp_path, {})
    assert set(index.generator) == {'genA', 'genB'}
    assert {p['generator'] for p in problems} == {'genE'} and any('no image file' in p['problem'] for p in problems)


SETTINGS_CASES = {
    'dict_k outside the sweep': (dict(dict_k=5), 'dict_k'),
    'no bootstrap': (dict(benchmark_bootstrap=0), 'benchmark_bootstrap'),
    'splits short of 1': (dict(splits=[0.5, 0.2, 0.2]), 'splits'),
    'a negative split': (dict(splits=[0.6, 0.6, -0.2]), 'splits'),
    'a negative k': (dict(dict_k=-1), 'dict_k'),
    'levels not increasing': (dict(dict_levels=[16, 8]), 'dict_levels'),
    'a tiny image size': (dict(image_size=4), 'image_size'),
    'not an http endpoint': (dict(lmm_base_url='ftp://example.org/v1'), 'lmm_base_url'),
    'an unknown model kind': (dict(dict_models=['matryoshka_transcoder', 'sea']), 'dict_models'),
    'an unknown mode': (dict(modes=['floating', 'flying']), 'modes'),
    'an unknown world': (dict(world='flat'), 'world'),
}


@pytest.mark.parametrize('case', list(SETTINGS_CASES))
def test_a_bad_setting_is_refused_when_the_profile_loads(case, tmp_path):
    override, name = SETTINGS_CASES[case]
    with pytest.raises(ValueError, match=name):
        load_profile('smoke', **override)
    with pytest.raises(ValueError, match=name):  # so `mtc reproduce` writes nothing before saying so
        run_stages('smoke', data_dir=str(tmp_path / 'data'), figures_dir=str(tmp_path / 'fig'), **override)
    assert not (tmp_path / 'data').exists() and not (tmp_path / 'fig').exists()


def test_a_second_run_of_the_same_folder_is_refused(tmp_path):
    cfg = tiny_profile(tmp_path)
    with run_lock(cfg):
        with pytest.raises(RunLockedError, match=f'process {os.getpid()}'):
            run_stages('smoke', data_dir=str(tmp_path / 'data'), figures_dir=str(tmp_path / 'fig'), **_tiny())
    with run_lock(cfg):  # released once the first run ends
        pass


def _tiny():
    from conftest import TINY

    return dict(TINY)


@pytest.fixture(scope='module')
def chain(tmp_path_factory):
    "A tiny embedded chain with one generator folder beside the simulated panel."
    folder = tmp_path_factory.mktemp('chain')
    (folder / 'generated' / 'genA').mkdir(parents=True)
    for i in range(4):
        Image.new('RGB', (32, 32), (40 * i, 90, 0)).save(folder / 'generated' / 'genA' / f'{i}.png')
    cfg = tiny_profile(folder, generated_root=str(folder / 'generated'))
    run_chain(cfg)
    return cfg


def test_a_failed_benchmark_rerun_keeps_the_last_outputs(chain, monkeypatch):
    import mtc_nb.stages.benchmark as stages

    folder = chain.run_dir / 'benchmark'
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError('the disk filled up')

    monkeypatch.setattr(stages, 'run_benchmark', broken)
    with pytest.raises(RuntimeError, match='disk'):
        stages.benchmark_stage(chain, force=True, progress=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before  # manifest included
    assert stages.load_benchmark(chain)['table'].equals(pd.read_parquet(folder / 'table.parquet'))


def test_label_names_the_settings_that_differ_from_the_run(chain, tmp_path):
    from mtc_nb.cli import label

    kw = {**_tiny(), 'data_dir': str(chain.path('data_dir')), 'figures_dir': str(chain.fig_dir)}
    kw.pop('dict_k')
    kw.pop('dict_k_sweep')  # the smoke profile's own k: not the run's
    with pytest.raises(StaleStageError, match=r"dict_k: 4 in the run, 8 here.*-p dict_k 4"):
        label([chain.path('generated_root')], 'smoke', **kw)


def test_label_on_a_folder_with_no_image_says_so(chain, tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SystemExit, match='no image file'):
        main(['label', str(tmp_path / 'empty'), '--profile', 'smoke', '-p', 'data_dir', str(chain.path('data_dir'))])


def test_label_writes_a_name_that_is_not_utf8(chain, tmp_path):
    import io
    from mtc_nb.cli import label
    from mtc_nb.scoring import write_labels

    name = tmp_path / os.fsdecode(b'gen\xe9.png')
    Image.new('RGB', (32, 32), (10, 20, 30)).save(name)
    kw = {**_tiny(), 'data_dir': str(chain.path('data_dir')), 'figures_dir': str(chain.fig_dir)}
    kw['generated_root'] = str(chain.path('generated_root'))
    rows, unreadable = label([name, tmp_path], 'smoke', **kw)  # given by name it is scored; in a folder, left out
    assert rows[0]['file'].endswith('gen\\xe9.png') and 'not valid UTF-8' in unreadable[0][1]
    for fmt in ('csv', 'jsonl'):
        buffer = io.StringIO()
        write_labels(rows, unreadable, fmt, buffer)
        buffer.getvalue().encode('utf-8')  # what a UTF-8 terminal or file takes


# ---- the LMM: loud, bounded, never sticky ----


@pytest.mark.parametrize('code, says', [(401, 'refused the API key'), (403, 'refused access'), (404, 'no such')])
def test_a_refused_key_stops_at_the_first_request_and_names_the_variable(images, monkeypatch, code, says):
    monkeypatch.setenv('MTC_LMM_KEY_UNDER_TEST', 'sk-very-secret')
    with LocalChatServer(lambda req, n: (code, {'error': {'message': 'no'}})) as srv:
        lmm = LMMInterpreter(
            LMMConfig(srv.url, 'm', api_key_env='MTC_LMM_KEY_UNDER_TEST', max_workers=2), images / 'cache.jsonl'
        )
        with pytest.raises(LMMFatalError, match=f"{says}.*MTC_LMM_KEY_UNDER_TEST") as err:
            lmm.interpret(table(latents=range(8)), lambda i: images / f'{i}.png')
    assert srv.url in str(err.value) and 'sk-very-secret' not in str(err.value)
    assert len(srv.requests) <= 2  # the first request of each worker, no more


@pytest.mark.parametrize(
    'reply',
    [
        (200, '{"id": "torn'),  # not JSON
        (200, '<html><body>502 Bad Gateway</body></html>', {'Content-Type': 'text/html'}),  # a proxy's page
        (503, {'error': {'message': 'down'}}),
    ],
    ids=['not json', 'an html page', 'down'],
)
def test_a_failing_endpoint_costs_a_bounded_number_of_requests(images, reply):
    with LocalChatServer(lambda req, n: reply) as srv:
        lmm = LMMInterpreter(LMMConfig(srv.url, 'm', max_retries=5, timeout=5, backoff=0.01), images / 'cache.jsonl')
        out = lmm.interpret(table(latents=range(32)), lambda i: images / f'{i}.png')
    assert (out.status == 'commonality error').all() and lmm.stopped and 'in a row' in lmm.stopped
    assert len(srv.requests) <= lmm.cfg.max_failures_in_a_row + lmm.cfg.max_workers  # not 6 per latent
    assert not (images / 'cache.jsonl').exists() or not (images / 'cache.jsonl').read_text().strip()


def test_a_huge_reply_is_kept_short(images):
    def respond(req, n):
        text = req['messages'][0]['content'][0]['text']
        return '[Commonality: ' + 'boxes ' * 200_000 + ']' if 'in common' in text else '[No common errors]'

    with LocalChatServer(respond) as srv:
        lmm = LMMInterpreter(LMMConfig(srv.url, 'm'), images / 'cache.jsonl')
        out = lmm.interpret(table(), lambda i: images / f'{i}.png')
    cached = [json.loads(line) for line in (images / 'cache.jsonl').read_text().splitlines()]
    assert all(len(r['text']) <= MAX_REPLY_CHARS for r in cached)
    assert (images / 'cache.jsonl').stat().st_size < 20_000
    assert out.status[0] in ('ok', 'commonality malformed')  # a cut reply may lose its closing bracket
    assert out.commonality.isna()[0] or len(out.commonality[0]) <= MAX_PHRASE_CHARS


@pytest.fixture
def folders_cfg(tmp_path, monkeypatch):
    "The paper profile on small class folders (a tiny random CLIP), trained through the dictionaries stage."
    from mtc_nb.scenes import draw_attributes, render

    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    rng = np.random.default_rng(0)
    for sub, mode in (('human_correct', None), ('human_error', 'floating')):
        (tmp_path / 'images' / sub).mkdir(parents=True)
        for i in range(24):
            Image.fromarray(render(draw_attributes(rng, 'object'), mode, 48)).save(
                tmp_path / 'images' / sub / f'{i}.png'
            )
    for gen, mode in (('genP', None), ('genQ', 'floating')):
        (tmp_path / 'generated' / gen).mkdir(parents=True)
        for i in range(6):
            image = render(draw_attributes(rng, 'object'), mode, 48)
            Image.fromarray(image).save(tmp_path / 'generated' / gen / f'{i}.png')
    cfg = paper_profile(tmp_path).replace(
        generated_root=str(tmp_path / 'generated'),
        benchmark_bootstrap=100,
        dict_models=['matryoshka_transcoder'],
        dict_levels=[8, 16],
        dict_k=4,
        dict_k_sweep=[4],
        dict_epochs=2,
        seeds=[0],
        feature_min_images=0,
        feature_top_n=5,
        lmm_judged_features=1,
        lmm_model='test-model',
        dict_workers=1,
    )
    run_chain(cfg, upto='dictionaries')
    return cfg


def two_pass(req, n):
    text = req['messages'][0]['content'][0]['text']
    if 'in common' in text:
        return '[Commonality: objects]'
    return '[Error: the object floats above the ground]' if 'Check for' in text else '[Yes]'


def test_a_refused_key_leaves_the_features_stage_incomplete_and_a_fixed_one_finishes(folders_cfg):
    from mtc_nb.stages.features import features_stage
    from mtc_nb.stages.benchmark import benchmark_stage

    with LocalChatServer(lambda req, n: (401, {'error': {'message': 'bad key'}})) as srv:
        with pytest.raises(LMMFatalError, match='MTC_LMM_API_KEY'):
            features_stage(folders_cfg.replace(lmm_base_url=srv.url), progress=False)
    assert read_manifest(folders_cfg, 'features') is None  # not complete: the next run asks again
    with LocalChatServer(two_pass) as srv:
        cfg = folders_cfg.replace(lmm_base_url=srv.url)
        rows, _ = features_stage(cfg, progress=False)
        assert read_manifest(cfg, 'features').get('retry') is None and rows[0]['relevance_count'] > 0
        bench = benchmark_stage(cfg, progress=False)
    assert len(bench['features']) + len(bench['excluded']) > 0


def test_failed_interpretations_are_asked_again_and_the_benchmark_follows(folders_cfg, monkeypatch):
    import mtc_nb.stages.features as stages
    from mtc_nb.stages.benchmark import benchmark_stage
    from mtc_nb.manifests import stage_state

    state = {'fail': True}

    def flaky(req, n):  # while failing, every other request is a server error
        return (500, {'error': {'message': 'busy'}}) if state['fail'] and n % 2 else two_pass(req, n)

    no_retries = lambda cfg: LMMConfig(str(cfg.lmm_base_url), str(cfg.lmm_model), max_retries=0)
    monkeypatch.setattr(stages, 'lmm_config', no_retries)
    with LocalChatServer(flaky) as srv:
        cfg = folders_cfg.replace(lmm_base_url=srv.url)
        stages.features_stage(cfg, progress=False)
        first = read_manifest(cfg, 'features')
        assert first['retry'] and 'failed' in first['retry']  # complete, but marked to ask again
        benchmark_stage(cfg, progress=False)  # the run goes on with what was named
        n_first, state['fail'] = len(srv.requests), False
        stages.features_stage(cfg, progress=False)  # the next run asks only for what failed
        asked_again = len(srv.requests) - n_first
    assert read_manifest(cfg, 'features').get('retry') is None and 0 < asked_again < n_first
    current, why = stage_state(cfg, 'benchmark')
    assert not current and 'run again' in why  # the benchmark follows the features it read


def test_a_failing_stage_is_one_line_naming_its_error_and_traceback(tmp_path):
    "`mtc reproduce` out of order: the stage's error in one line, and where its executed copy keeps the traceback."
    args = ['reproduce', '--profile', 'smoke', '--stages', '02_encoders', '-p', 'data_dir', str(tmp_path / 'data')]
    args += ['-p', 'figures_dir', str(tmp_path / 'fig')]
    with pytest.raises(SystemExit, match=r"stage 02_encoders failed: StaleStageError: .*02_encoders\.ipynb"):
        main(args)
