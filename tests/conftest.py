import os

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')


def run_chain(cfg, upto: str = 'benchmark', force: bool = False):
    "Test fixture: call the stage functions in data-flow order up to `upto`; returns each stage's result."
    from mtc_nb.stages.scenes import scenes_stage
    from mtc_nb.stages.encoder import encoder_stage
    from mtc_nb.stages.classifier import classifier_stage
    from mtc_nb.stages.dictionaries import dictionaries_stage
    from mtc_nb.stages.features import features_stage
    from mtc_nb.stages.benchmark import benchmark_stage

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


PAPER_TINY = dict(  # the paper profile's dictionaries and features, shrunk to seconds
    dict_models=['matryoshka_transcoder', 'paper_repo'],
    dict_levels=[8, 16],
    dict_k=4,
    dict_k_sweep=[4],
    dict_epochs=2,
    paper_epochs=2,
    seeds=[0],
    feature_min_images=0,
    feature_top_n=5,
    lmm_judged_features=1,
)


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


HOSTILE = {  # names and words a run must show as text, never run: each would set a flag or open a dialog if it ran
    'generator': '<img src=x onerror=alert(1)>',
    'generator_flag': '<img src=x onerror=window.__mtc_pwned=2>',
    'class_subfolder': '<svg onload=alert(3)>',
    'file': '"><img src=x onerror=alert(4)>.png',
    'prompt': '<script>window.__mtc_pwned=5</script> a cat on a chair',
    'mode': '<img src=x onerror=alert(6)>',
    'commonality': '<img src=x onerror=alert(7)> boxes | $x$',
    'error': '<script>window.__mtc_pwned=8</script> the **box** floats | $\\frac{a}{b}$',
}


def real_photos() -> list:
    "Photographs that installed packages ship: scikit-learn's two sample images and matplotlib's Grace Hopper."
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images
    from matplotlib import cbook

    photos = list(load_sample_images().images)
    with cbook.get_sample_data('grace_hopper.jpg') as f:
        photos.append(np.asarray(Image.open(f).convert('RGB')))
    return photos


def photo_crops(photos, n: int, rng, wrong: bool) -> list:
    """`n` crops of real photographs in mixed sizes; `wrong`: turned upside down with the colour channels reversed (a
    stand-in for an implausible image that a classifier can learn)."""
    import numpy as np
    from PIL import Image

    out = []
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(rng.integers(80, 240))
        y, x = (int(rng.integers(0, s - side)) for s in photo.shape[:2])
        crop = photo[y : y + side, x : x + side]
        crop = crop[::-1, :, ::-1] if wrong else crop
        size = (int(rng.integers(40, 160)), int(rng.integers(40, 160)))
        out.append(Image.fromarray(np.ascontiguousarray(crop)).resize(size))
    return out


FORMATS = ('.jpg', '.png', '.webp', '.gif', '.tif', '.bmp')


def own_folders(root):
    """A researcher's folders, as they come: class folders of real photographs (mixed sizes and formats, a generator
    subfolder named with markup, a file named with markup, a name that is not UTF-8, a HEIC file, a dangling link) and
    five generator folders under generated/ (two named with markup, one with side tables that hold markup and
    mistakes, an empty one, one whose images are all broken)."""
    import os
    import numpy as np

    rng = np.random.default_rng(0)
    photos = real_photos()
    for sub, wrong, inner in (('human_correct', False, 'genX'), ('human_error', True, HOSTILE['class_subfolder'])):
        folder = root / 'images' / sub / inner
        folder.mkdir(parents=True)
        for i, image in enumerate(photo_crops(photos, 20, rng, wrong)):
            image.save(folder / f'{i:02d}{FORMATS[i % len(FORMATS)]}')
    odd = root / 'images' / 'human_correct' / 'genX'
    photo_crops(photos, 1, rng, False)[0].save(odd / HOSTILE['file'])
    photo_crops(photos, 1, rng, False)[0].save(odd / os.fsdecode(b'caf\xe9.png'))
    (odd / 'phone.heic').write_bytes(b'\x00\x00\x00\x18ftypheic')
    os.symlink(odd / 'gone.png', odd / 'dangling.png')
    gens = root / 'generated'
    for name, wrong in (('genA', False), (HOSTILE['generator'], True), (HOSTILE['generator_flag'], False)):
        (gens / name).mkdir(parents=True)
        for i, image in enumerate(photo_crops(photos, 8, rng, wrong if name != 'genA' else bool(i % 4 == 0))):
            image.save(gens / name / f'{i}{FORMATS[i % len(FORMATS)]}')
    tables = gens / HOSTILE['generator_flag']
    (tables / 'prompts.csv').write_text(
        'file;prompt\n' + ''.join(f"{i}{FORMATS[i % len(FORMATS)]};{HOSTILE['prompt']} {i // 2}\n" for i in range(8))
    )
    (tables / 'labels.csv').write_text(
        f"File,Label,mode\n0.jpg,Plausible,\n1.png,implausible,{HOSTILE['mode']}\n2.webp,maybe,\n0.jpg,implausible,\n"
    )
    (gens / 'genEmpty').mkdir()
    (gens / 'genEmpty' / 'notes.txt').write_text('the images come next week')
    (gens / 'genBroken').mkdir()
    for i in range(2):
        (gens / 'genBroken' / f'{i}.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
    return root


def own_settings(root, clip) -> dict:
    "The paper profile's settings for `own_folders(root)`, shrunk to a test's size."
    return dict(
        image_root=str(root / 'images'),
        clip_path=str(clip),
        data_dir=str(root / 'data'),
        figures_dir=str(root / 'fig'),
        generated_root=str(root / 'generated'),
        head_epochs=8,
        head_batch=8,
        splits=[0.6, 0.2, 0.2],
        **PAPER_TINY,
        dict_workers=1,
        workers=1,
        benchmark_bootstrap=100,
    )


def hostile_lmm(request: dict, n: int) -> str:
    "A chat server's reply that names every feature with markup, as a compromised or careless endpoint might."
    text = request['messages'][0]['content'][0]['text']
    if 'in common' in text:
        return f"[Commonality: {HOSTILE['commonality']}]"
    return f"[Error: {HOSTILE['error']}]" if 'Check for' in text else '[Yes]'


@pytest.fixture(scope='session')
def own_run(tmp_path_factory):
    """The paper profile end to end with `mtc reproduce`'s own runner (papermill, the stage notebooks, their HTML) on
    `own_folders`, with the offline interpreter, then `mtc label`; then the features and benchmark stages again with
    an LMM that answers in markup. Returns {'root', 'settings', 'offline': what the first run left, 'label': its
    output}."""
    import contextlib, io, shutil
    from mtc_nb.reproduce import run_stages
    from mtc_nb.cli import main
    from mtc_nb.testing import tiny_clip, LocalChatServer

    root = own_folders(tmp_path_factory.mktemp('own'))
    settings = own_settings(root, tiny_clip(root / 'clip'))
    os.environ.pop('MTC_CLIP_PATH', None)
    run_stages('paper', **settings)
    run_dir = root / 'data' / 'paper'
    offline = root / 'offline'
    shutil.copytree(run_dir / 'runs', offline / 'runs')
    shutil.copytree(run_dir / 'benchmark', offline / 'benchmark', ignore=shutil.ignore_patterns('*.parquet'))
    shutil.copy(root / 'fig' / 'results.json', offline / 'results.json')
    args = ['label', str(root / 'generated' / 'genA'), '--profile', 'paper']
    for k, v in settings.items():
        args += ['-p', k, ', '.join(map(str, v)) if isinstance(v, list) else str(v)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        main(args)
    with LocalChatServer(hostile_lmm) as srv:
        run_stages('paper', stages=['08_failure_modes', '09_benchmark'], **settings, lmm_base_url=srv.url)
    return {'root': root, 'settings': settings, 'offline': offline, 'label': (out.getvalue(), err.getvalue())}
