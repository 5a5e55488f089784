"""The paper's setting at its boundaries: the user's image folders + CLIP weights on disk (a tiny random CLIP)."""
import numpy as np
import pytest
import torch
from PIL import Image
from mtc_nb.core import load_profile
from mtc_nb.encoders import tiny_clip, ClipEncoder
from mtc_nb.classifier import classifier_stage, load_activations
from mtc_nb.scenes import draw_attributes, render

@pytest.fixture
def paper_cfg(tmp_path):
    rng = np.random.default_rng(0)
    for sub, mode in (('human_correct', None), ('human_error', 'reverse_perspective')):
        (tmp_path/'images'/sub/'genA').mkdir(parents=True)
        for i in range(30):
            Image.fromarray(render(draw_attributes(rng, 'road'), mode, 48)).save(tmp_path/'images'/sub/'genA'/f'{i}.png')
    clip = tiny_clip(tmp_path/'clip')
    return load_profile('paper', image_root=str(tmp_path/'images'), clip_path=str(clip), data_dir=str(tmp_path/'data'),
                        figures_dir=str(tmp_path/'fig'), head_epochs=3, head_batch=8, splits=[0.6, 0.2, 0.2])

def test_paper_profile_runs_through_clip_and_folders(paper_cfg, monkeypatch):
    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    res = classifier_stage(paper_cfg)
    assert res['h2'].shape == (60, 12)  # the tiny CLIP's projection dim
    acts, ids = load_activations(paper_cfg.run_dir/'activations', 'test')
    assert acts['h1'].shape == (len(ids), 256) and len(ids) == 12
    assert set(res['manifest'].generator) == {'genA'}
    # h2 comes from the same code path as a direct call
    enc = ClipEncoder(paper_cfg.clip_path)
    from mtc_nb.encoders import load_images
    first = res['manifest'].iloc[0]
    with torch.no_grad(): direct = enc(enc.preprocess(load_images([paper_cfg.path('image_root')/first.file])))
    torch.testing.assert_close(res['h2'][0], direct[0])

def test_missing_clip_weights_say_where_to_put_them(paper_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    with pytest.raises(FileNotFoundError, match='clip_path'):
        classifier_stage(paper_cfg.replace(clip_path=str(tmp_path/'nowhere')))

def test_missing_image_folders_are_a_clear_error(paper_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match='human_correct'):
        classifier_stage(paper_cfg.replace(image_root=str(tmp_path/'empty')))

def test_paper_profile_through_dictionaries_and_an_lmm_endpoint(paper_cfg, monkeypatch):
    "Folders + CLIP → classifier → dictionaries → features named by an LMM behind a local chat-completions server."
    from mtc_nb.dictionaries import dictionaries_stage
    from mtc_nb.stage_features import features_stage
    from mtc_nb.interpret import LocalChatServer
    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    cfg = paper_cfg.replace(dict_models=['matryoshka_transcoder', 'paper_repo'], dict_levels=[8, 16], dict_k=4, dict_k_sweep=[4],
                            dict_epochs=2, paper_epochs=2, seeds=[0], feature_min_images=0, feature_top_n=5, lmm_judged_features=1)
    classifier_stage(cfg); dictionaries_stage(cfg)

    def respond(req, n):
        text = req['messages'][0]['content'][0]['text']
        if 'in common' in text: return '[Commonality: roads]'
        if 'Check for' in text: return '[Error: the road widens toward the horizon]'
        return '[Yes]'
    with LocalChatServer(respond) as srv:
        rows, tables = features_stage(cfg.replace(lmm_base_url=srv.url, lmm_model='test-model'), progress=False)
        n_asked = len(srv.requests)
        again, _ = features_stage(cfg.replace(lmm_base_url=srv.url, lmm_model='test-model'), progress=False)
    assert sum(r['lmm_requests'] for r in rows) == n_asked > 0 and rows[0]['lmm_prompt_tokens'] > 0
    assert len(srv.requests) == n_asked and sum(r['lmm_requests'] for r in again) == 0  # the rerun is served from the cache
    assert [r['relevance_count'] for r in again] == [r['relevance_count'] for r in rows]
    assert {r['interpreter'] for r in rows} == {'test-model'}
    assert all(r['relevance_count'] == r['n_interpreted'] > 0 for r in rows)  # every interpreted latent was flagged
    assert 'mode_coverage' not in rows[0]  # user folders carry no planted-mode ground truth
    assert [(r['lmm_accuracy'], r['detection_score']) for r in rows] == [(1.0, 0.5)] * len(rows), rows  # the judge says yes to everything
    assert any('in common' in r['json']['messages'][0]['content'][0]['text'] for r in srv.requests)
    assert (cfg.run_dir/'features'/'lmm_cache.jsonl').exists()
    t = tables[rows[0]['name']]
    assert t.error[~t.skipped].eq('the road widens toward the horizon').all()
