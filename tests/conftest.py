import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')


def run_chain(cfg, upto: str = 'benchmark', force: bool = False):
    "Test fixture: call the stage functions in data-flow order up to `upto`; returns each stage's result."
    from mtc_nb.stages import scenes_stage, encoder_stage, classifier_stage, dictionaries_stage
    from mtc_nb.stages import features_stage, benchmark_stage

    calls = {
        'scenes': lambda: scenes_stage(cfg, force=force),
        'encoder': lambda: encoder_stage(cfg, force=force),
        'classifier': lambda: classifier_stage(cfg, force=force),
        'dictionaries': lambda: dictionaries_stage(cfg, force=force, progress=False),
        'features': lambda: features_stage(cfg, force=force, progress=False),
        'benchmark': lambda: benchmark_stage(cfg, force=force, progress=False),
    }
    out = {}
    for stage, call in calls.items():
        out[stage] = call()
        if stage == upto:
            break
    return out


TINY = dict(
    n_images=80,
    image_size=32,
    finetune_epochs=1,
    head_epochs=2,
    head_batch=16,
    seeds=[0],
    dict_models=['matryoshka_transcoder', 'transcoder', 'paper_repo'],
    dict_levels=[8, 16],
    dict_k=4,
    dict_k_sweep=[4],
    dict_epochs=2,
    paper_epochs=2,
    feature_min_images=0,
    workers=1,
    dict_workers=1,
    benchmark_images=6,
    benchmark_bootstrap=100,
)


def tiny_profile(folder, **kw):
    "Test fixture: the smoke profile shrunk to seconds, its data and figures under `folder`."
    from mtc_nb.core import load_profile

    return load_profile('smoke', data_dir=str(folder / 'data'), figures_dir=str(folder / 'fig'), **{**TINY, **kw})


def paper_profile(folder):
    "Test fixture: the paper profile on the image folders under `folder/images`, with a tiny random CLIP."
    from mtc_nb.core import load_profile
    from mtc_nb.testing import tiny_clip

    clip = tiny_clip(folder / 'clip')
    return load_profile(
        'paper',
        image_root=str(folder / 'images'),
        clip_path=str(clip),
        data_dir=str(folder / 'data'),
        figures_dir=str(folder / 'fig'),
        head_epochs=3,
        head_batch=8,
        splits=[0.6, 0.2, 0.2],
    )
