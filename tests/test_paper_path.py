"""The paper's setting at its boundaries: the user's image folders + CLIP weights on disk (a tiny random CLIP)."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from conftest import run_chain, paper_profile, PAPER_TINY
from mtc_nb.manifests import StaleStageError
from mtc_nb.core import _jsonable
from mtc_nb.encoders import ClipEncoder, load_images
from mtc_nb.classifier import load_activations
from mtc_nb.scenes import draw_attributes, render


@pytest.fixture
def paper_cfg(tmp_path):
    rng = np.random.default_rng(0)
    for sub, mode in (('human_correct', None), ('human_error', 'reverse_perspective')):
        (tmp_path / 'images' / sub / 'genA').mkdir(parents=True)
        for i in range(30):
            image = render(draw_attributes(rng, 'road'), mode, 48)
            Image.fromarray(image).save(tmp_path / 'images' / sub / 'genA' / f'{i}.png')
    return paper_profile(tmp_path)


def test_paper_profile_runs_through_clip_and_folders(paper_cfg, monkeypatch):
    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    res = run_chain(paper_cfg, upto='classifier')['classifier']
    assert res['h2'].shape == (60, 12)  # the tiny CLIP's projection dim
    acts, ids = load_activations(paper_cfg.run_dir / 'activations', 'test')
    assert acts['h1'].shape == (len(ids), 256) and len(ids) == 12
    assert set(res['manifest'].generator) == {'genA'}
    # h2 comes from the same code path as a direct call
    enc = ClipEncoder(paper_cfg.clip_path)
    first = res['manifest'].iloc[0]
    with torch.no_grad():
        direct = enc(enc.preprocess(load_images([paper_cfg.path('image_root') / first.file])))
    torch.testing.assert_close(res['h2'][0], direct[0])


def test_a_changed_folder_makes_every_stage_stale(paper_cfg, monkeypatch):
    "The user's images are part of the fingerprint: a new image makes the scenes stage, and all after it, stale."
    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    run_chain(paper_cfg, upto='classifier')
    Image.new('RGB', (48, 48)).save(paper_cfg.path('image_root') / 'human_error' / 'genA' / 'new.png')
    from mtc_nb.stages.classifier import classifier_stage

    with pytest.raises(StaleStageError, match='input images changed'):
        classifier_stage(paper_cfg)  # out of order: it would read h2 of the old folder
    res = run_chain(paper_cfg, upto='classifier')['classifier']  # in order, the chain reruns from the scenes stage
    assert len(res['manifest']) == 61


def test_missing_clip_weights_say_where_to_put_them(paper_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    with pytest.raises(FileNotFoundError, match='clip_path'):
        run_chain(paper_cfg.replace(clip_path=str(tmp_path / 'nowhere')), upto='encoder')


def test_missing_image_folders_are_a_clear_error(paper_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match='human_correct'):
        run_chain(paper_cfg.replace(image_root=str(tmp_path / 'empty')), upto='scenes')


def test_paper_profile_through_dictionaries_and_an_lmm_endpoint(paper_cfg, monkeypatch):
    "Folders + CLIP → classifier → dictionaries → features named by an LMM behind a local chat-completions server."
    from mtc_nb.stages.features import features_stage
    from mtc_nb.testing import LocalChatServer

    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    cfg = paper_cfg.replace(**PAPER_TINY)
    run_chain(cfg, upto='dictionaries')

    def respond(req, n):
        text = req['messages'][0]['content'][0]['text']
        if 'in common' in text:
            return '[Commonality: roads]'
        if 'Check for' in text:
            return '[Error: the road widens toward the horizon]'
        return '[Yes]'

    lmm_cfg = cfg.replace(lmm_model='test-model')
    with LocalChatServer(respond) as srv:
        lmm_cfg = lmm_cfg.replace(lmm_base_url=srv.url)
        rows, tables = features_stage(lmm_cfg, progress=False)
        n_asked = len(srv.requests)
        again, _ = features_stage(lmm_cfg, progress=False)  # current: reused, nothing asked
        assert len(srv.requests) == n_asked and again == _jsonable(rows)  # as the manifest stores them
        forced, _ = features_stage(lmm_cfg, force=True, progress=False)  # run again: every answer from the cache
    assert sum(r['lmm_requests'] for r in rows) == n_asked > 0 and rows[0]['lmm_prompt_tokens'] > 0
    assert len(srv.requests) == n_asked and sum(r['lmm_requests'] for r in forced) == 0
    assert [r['relevance_count'] for r in forced] == [r['relevance_count'] for r in rows]
    assert {r['interpreter'] for r in rows} == {'test-model'}
    assert all(r['relevance_count'] == r['n_interpreted'] > 0 for r in rows)  # every interpreted latent was flagged
    assert 'mode_coverage' not in rows[0] and 'error_mode_mapping' not in rows[0]  # user folders: no planted modes
    judged = [(r['lmm_accuracy'], r['detection_score']) for r in rows]
    assert judged == [(1.0, 0.5)] * len(rows), rows  # the judge says yes to everything
    assert any('in common' in r['json']['messages'][0]['content'][0]['text'] for r in srv.requests)
    assert (cfg.run_dir / 'features' / 'lmm_cache.jsonl').exists()
    t = tables[rows[0]['name']]
    assert t.error[~t.skipped].eq('the road widens toward the horizon').all()
    # the benchmark on the user's generator folders (no simulated panel in the paper's setting)
    from mtc_nb.stages.benchmark import benchmark_stage

    generated = paper_cfg.path('image_root').parent / 'generated'
    rng = np.random.default_rng(1)
    for gen, mode in (('genP', None), ('genQ', 'reverse_perspective')):
        (generated / gen).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(render(draw_attributes(rng, 'road'), mode, 48)).save(generated / gen / f'{i}.png')
    bench = benchmark_stage(lmm_cfg.replace(generated_root=str(generated)), progress=False)
    assert set(bench['table'].generator) == {'genP', 'genQ'} and not bench['table'].simulated.any()
    candidates = pd.concat([bench['features'], bench['excluded']])  # kept, and left out for detecting nothing
    assert bench['summary'] is None and set(candidates.kind) == {'feature'}  # the LMM-flagged latents
    assert set(candidates.name) == {'the road widens toward the horizon'} and bench['excluded'].reason.notna().all()
    assert (bench['features'].val_auroc >= 0.6).all() and (bench['features'].test_auroc >= 0.6).all()


def test_splice_fidelity_of_folders_uses_the_true_labels(paper_cfg, monkeypatch):
    "The dictionaries stage scores splicing against the folders' labels, not the classifier's own predictions."
    from mtc_nb.stages.dictionaries import dictionaries_stage
    from mtc_nb.dictionaries import load_dictionary
    from mtc_nb.classifier import load_head
    from mtc_nb.metrics import splice_fidelity
    import pandas as pd

    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    cfg = paper_cfg.replace(dict_models=['transcoder'], dict_levels=[16], dict_k=4, dict_epochs=1, seeds=[0])
    run_chain(cfg, upto='classifier')
    (row,) = dictionaries_stage(cfg, progress=False)
    acts, ids = load_activations(cfg.run_dir / 'activations', 'test')
    truth = pd.read_parquet(cfg.run_dir / 'scenes' / 'manifest.parquet').set_index('id').loc[ids, 'label'].values
    model = load_dictionary(cfg.run_dir / 'dictionaries' / row['name'])
    with torch.no_grad():
        recons = model(acts['h2']).recons[:, 0]
    head = load_head(cfg.run_dir / 'classifier')
    assert ((acts['h0'].numpy() > 0.5) != truth).any()  # the classifier errs on some image, so the labels matter
    expected = splice_fidelity(head.logit_from_h1, acts['h1'], recons, truth)
    assert row['splice_bce_recovered'] == pytest.approx(expected['bce_recovered'])
