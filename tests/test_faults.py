"""The fault suite (`pytest -m faults`): bad images, settings, checkpoints and activations each get a clear report;
a bad file is left out with its reason and the rest of the run goes on; damaged work is redone, never loaded."""

import io
import hashlib, json
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from conftest import run_chain, paper_profile
from mtc_nb.core import load_profile
from mtc_nb.reproduce import run_stages
from mtc_nb.encoders import load_images, LiteEncoder
from mtc_nb.testing import tiny_clip
from mtc_nb.images import ImageReadError, index_folders, read_image
from mtc_nb.scenes import draw_attributes, render
from mtc_nb.dictionaries import DictConfig, save_dictionary, load_dictionary
from mtc_nb.stages.dictionaries import _completed_row
from mtc_nb.training import train_dictionaries

pytestmark = pytest.mark.faults


def png_claiming(width: int, height: int) -> bytes:
    "A PNG whose header claims width x height (a decompression bomb's header) over a few bytes of data."
    chunk = lambda kind, data: (
        struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF)
    )
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b'\0' * 16)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', pixels) + chunk(b'IEND', b'')


def jpeg_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=90)
    return buffer.getvalue()


BAD_FILES = {  # name -> (bytes or an image writer, a word the reason must contain)
    'empty.png': (b'', 'not a readable image'),
    'noise.jpg': (bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)), 'not a readable image'),
    'notes.png': (b'these are my notes, not a picture', 'not a readable image'),
    'bomb.png': (png_claiming(30000, 30000), 'too large'),
    'dot.png': (None, 'smaller than'),
    'truncated.jpg': (None, 'not a readable image'),
}


@pytest.fixture
def messy_cfg(tmp_path):
    "30 + 30 rendered photos of mixed sizes (48-90 px, PNG and JPEG), and every kind of bad file among the errors."
    rng = np.random.default_rng(0)
    for sub, mode in (('human_correct', None), ('human_error', 'reverse_perspective')):
        folder = tmp_path / 'images' / sub / 'genA'
        folder.mkdir(parents=True)
        for i in range(30):
            image = render(draw_attributes(rng, 'road'), mode, int(rng.integers(48, 91)))
            if i % 2:
                Image.fromarray(image).save(folder / f'{i}.png')
            else:
                (folder / f'{i}.jpg').write_bytes(jpeg_bytes(image))
    bad = tmp_path / 'images' / 'human_error' / 'genA'
    for name, (content, _) in BAD_FILES.items():
        if content is not None:
            (bad / name).write_bytes(content)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(bad / 'dot.png')
    whole = jpeg_bytes(render(draw_attributes(rng, 'road'), None, 64))
    (bad / 'truncated.jpg').write_bytes(whole[: len(whole) // 2])
    (bad / '._0.jpg').write_bytes(b'\x00\x05\x16\x07\x00\x02')  # a macOS resource fork: never read
    return paper_profile(tmp_path)


def test_a_messy_folder_runs_and_reports_each_bad_file(messy_cfg, monkeypatch):
    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    res = run_chain(messy_cfg, upto='classifier')['classifier']
    assert res['h2'].shape == (60, 12)  # every good photo, whatever its size, in batches of mixed sizes
    skipped = json.loads((messy_cfg.run_dir / 'scenes' / 'skipped.json').read_text())
    reasons = {s['file'].split('/')[-1]: s['reason'] for s in skipped}
    assert sorted(reasons) == sorted(BAD_FILES)  # the resource fork is not an image file at all
    for name, (_, word) in BAD_FILES.items():
        assert word in reasons[name], (name, reasons[name])
    stage = json.loads((messy_cfg.run_dir / 'scenes' / 'stage.json').read_text())
    assert stage['n_skipped'] == len(BAD_FILES) and stage['n_images'] == 60


def test_mixed_sizes_reach_the_encoders(tmp_path):
    paths = []
    for i, size in enumerate((40, 64, 97)):
        paths.append(tmp_path / f'{i}.png')
        Image.fromarray(np.full((size, size + 3, 3), 60 * i, np.uint8)).save(paths[-1])
    images = load_images(paths)
    assert isinstance(images, list) and [a.shape for a in images] == [(40, 43, 3), (64, 67, 3), (97, 100, 3)]
    assert load_images(paths, size=32).shape == (3, 32, 32, 3)
    x = LiteEncoder(image_size=64).preprocess(images)
    assert x.shape == (3, 3, 64, 64)
    # each image alone gives what it gives in the mixed batch
    torch.testing.assert_close(x[1:2], LiteEncoder(image_size=64).preprocess(load_images(paths[1:2])))


def test_read_image_fixes_what_pil_gets_silently_wrong(tmp_path):
    Image.fromarray(np.full((16, 16), 30000, np.uint16)).save(tmp_path / 'grey16.png')
    assert abs(np.asarray(read_image(tmp_path / 'grey16.png')).mean() - 30000 / 65535 * 255) < 1  # not 255 (white)
    tall = Image.fromarray(np.zeros((20, 10, 3), np.uint8))
    exif = tall.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    tall.save(tmp_path / 'turned.jpg', exif=exif)
    assert read_image(tmp_path / 'turned.jpg').size == (20, 10)
    rgba = np.zeros((12, 12, 4), np.uint8)  # fully transparent: white, not black
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'clear.png')
    assert np.asarray(read_image(tmp_path / 'clear.png')).min() == 255
    (tmp_path / 'bomb.png').write_bytes(png_claiming(30000, 30000))
    with pytest.raises(ImageReadError, match='too large'):
        read_image(tmp_path / 'bomb.png')


def test_an_explicit_clip_path_beats_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv('MTC_CLIP_PATH', str(tmp_path / 'from_env'))
    assert load_profile('paper').clip_path == str(tmp_path / 'from_env')  # the environment beats settings.ini
    assert load_profile('paper', clip_path=str(tmp_path / 'given')).clip_path == str(tmp_path / 'given')


def test_reproduce_checks_its_inputs_before_any_stage(tmp_path, monkeypatch):
    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    where = dict(data_dir=str(tmp_path / 'data'), figures_dir=str(tmp_path / 'fig'))
    (tmp_path / 'images' / 'human_correct').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='No CLIP weights'):
        run_stages('paper', clip_path=str(tmp_path / 'nowhere'), image_root=str(tmp_path / 'images'), **where)
    clip = tiny_clip(tmp_path / 'clip')
    with pytest.raises(FileNotFoundError, match='human_error'):
        run_stages('paper', clip_path=str(clip), image_root=str(tmp_path / 'images'), **where)
    for workers in ('many', 0, -2):
        with pytest.raises(ValueError, match='dict_workers'):
            run_stages('smoke', dict_workers=workers, **where)
    assert not (tmp_path / 'fig').exists() and not (tmp_path / 'data').exists()  # nothing written anywhere


def test_dictionary_workers_share_the_thread_budget(tmp_path):
    from mtc_nb.stages.dictionaries import dictionary_workers

    import os

    cores = os.cpu_count()  # the profile's threads (auto: one per CPU), whatever torch was given
    cfg = load_profile('smoke', device='cpu')
    assert dictionary_workers(cfg) == (min(4, cores), max(1, cores // min(4, cores)))  # auto on the CPU
    assert dictionary_workers(cfg.replace(dict_workers=3)) == (3, max(1, cores // 3))
    assert dictionary_workers(cfg.replace(dict_workers=1)) == (1, cores)


def _save(image: Image.Image, fmt: str, **kw):
    def write(path):
        image.save(path, format=fmt, **kw)

    return write


def _rotated_jpeg(path):
    tall = Image.fromarray(np.full((24, 12, 3), 90, np.uint8))
    exif = tall.getexif()
    exif[0x0112] = 6
    tall.save(path, format='JPEG', exif=exif)


def _corrupt_png(path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format='PNG')
    data = bytearray(buffer.getvalue())
    data[60:90] = bytes(30)  # zeros over the compressed pixels: a CRC and zlib error
    path.write_bytes(bytes(data))


def _truncated_jpeg(path):
    path.write_bytes(jpeg_bytes(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))[:400])


_GREY = Image.fromarray(np.full((20, 20), 128, np.uint8), 'L')
# name -> (how to write it, a check of the pixels read when it is kept | a word of the reason it is left out
#          | None: never listed)
IMAGE_CASES = {
    'corrupt.png': (_corrupt_png, 'not a readable image'),
    'truncated.jpg': (_truncated_jpeg, 'not a readable image'),
    'zero.png': (lambda p: p.write_bytes(b''), 'not a readable image'),
    'text.jpg': (lambda p: p.write_text('hello'), 'not a readable image'),
    'one_pixel.png': (_save(Image.new('RGB', (1, 1)), 'PNG'), 'smaller than'),
    'bomb.png': (lambda p: p.write_bytes(png_claiming(30000, 30000)), 'too large'),
    'cmyk.jpg': (_save(Image.new('CMYK', (20, 20), (0, 255, 255, 0)), 'JPEG'), lambda a: a[..., 0].mean() > 200),
    'grey16.png': (
        _save(Image.fromarray(np.full((20, 20), 40000, np.uint16)), 'PNG'),
        lambda a: abs(a.mean() - 40000 / 65535 * 255) < 1,
    ),
    'palette.png': (
        _save(Image.new('RGB', (20, 20), (10, 200, 30)).convert('P'), 'PNG'),
        lambda a: a[..., 1].mean() > 150,
    ),
    'alpha.png': (_save(Image.new('RGBA', (20, 20), (0, 0, 0, 0)), 'PNG'), lambda a: a.min() == 255),
    'grey_alpha.png': (_save(Image.new('LA', (20, 20), (0, 0)), 'PNG'), lambda a: a.min() == 255),
    'grey.png': (_save(_GREY, 'PNG'), lambda a: a.shape == (20, 20, 3) and a.mean() == 128),
    'turned.jpg': (_rotated_jpeg, lambda a: a.shape[:2] == (12, 24)),
    'image.webp': (_save(Image.new('RGB', (20, 20), (200, 0, 0)), 'WEBP'), lambda a: a[..., 0].mean() > 150),
    'UPPER.PNG': (_save(Image.new('RGB', (20, 20)), 'PNG'), lambda a: a.shape == (20, 20, 3)),
    'nested/deeper/image.png': (_save(Image.new('RGB', (20, 20)), 'PNG'), lambda a: a.shape == (20, 20, 3)),
    '.hidden.png': (_save(Image.new('RGB', (20, 20)), 'PNG'), None),
    '.thumbnails/image.png': (_save(Image.new('RGB', (20, 20)), 'PNG'), None),
}


@pytest.mark.parametrize('name', list(IMAGE_CASES))
def test_each_kind_of_image_file(tmp_path, name):
    write, expected = IMAGE_CASES[name]
    for sub, shade in (('human_correct', 30), ('human_error', 200)):
        (tmp_path / sub).mkdir()
        for i in range(4):
            Image.new('RGB', (16, 16), (shade + i, 0, 0)).save(tmp_path / sub / f'{i}.png')
    path = tmp_path / 'human_error' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    manifest, skipped = index_folders(tmp_path, splits=(0.6, 0.2, 0.2))
    rel = f'human_error/{name}'
    reasons = {s['file']: s['reason'] for s in skipped}
    assert len(manifest) + len(skipped) == 8 + (expected is not None)  # the counts add up
    if expected is None:
        assert rel not in reasons and rel not in set(manifest.file)
    elif isinstance(expected, str):
        assert expected in reasons[rel] and rel not in set(manifest.file)
    else:
        assert rel in set(manifest.file) and not skipped
        assert expected(np.asarray(read_image(path)))
        if name.startswith('nested/'):
            assert manifest.set_index('file').loc[rel, 'generator'] == 'nested'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    "A small trained Matryoshka transcoder, saved."
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 12, generator=gen), torch.randn(96, 6, generator=gen)
    cfg = DictConfig(d_in=12, d_out=6, d_sae=16, levels=(8, 16), k=3, epochs=1, batch_size=32)
    res = train_dictionaries([cfg], x, y, x, y, progress=False)[0]
    return save_dictionary(res, tmp_path_factory.mktemp('ckpt') / 'mtc', stage_fingerprint='fp', test={'fvu': 1.0})


def _damage(folder, how):
    weights, config = folder / 'weights.safetensors', folder / 'config.json'
    if how == 'truncated':
        weights.write_bytes(weights.read_bytes()[:200])
    elif how == 'one byte changed':
        data = bytearray(weights.read_bytes())
        data[-3] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == 'missing weights':
        weights.unlink()
    elif how == 'wrong schema':
        meta = json.loads(config.read_text())
        config.write_text(json.dumps({**meta, 'schema_version': 99}))
    elif how == 'not safetensors':
        weights.write_bytes(b'\x80\x04pickle')  # with a matching hash: the reader must notice the format itself
        meta = json.loads(config.read_text())
        config.write_text(json.dumps({**meta, 'weights_sha256': hashlib.sha256(weights.read_bytes()).hexdigest()}))
    elif how == 'other shapes':
        meta = json.loads(config.read_text())
        meta['config']['d_sae'] = 32
        meta['config']['levels'] = [8, 32]
        config.write_text(json.dumps(meta))  # weights intact, config edited: they no longer fit


@pytest.mark.parametrize(
    'how', ['truncated', 'one byte changed', 'missing weights', 'wrong schema', 'not safetensors', 'other shapes']
)
def test_a_damaged_checkpoint_is_a_clear_error_and_is_trained_again(checkpoint, tmp_path, how):
    import shutil

    folder = tmp_path / 'mtc'
    shutil.copytree(checkpoint, folder)
    assert _completed_row(folder, 'fp') == {'fvu': 1.0}  # intact: reused
    _damage(folder, how)
    expected = {'not safetensors': 'not a readable safetensors', 'other shapes': 'does not fit'}.get(how, '')
    with pytest.raises((ValueError, FileNotFoundError), match=f'(?s){expected}.*rerun the dictionaries stage'):
        load_dictionary(folder)
    assert _completed_row(folder, 'fp') is None  # a resumed stage trains it again


def test_a_checkpoint_from_before_the_rate_floor_loads_without_one(checkpoint, tmp_path):
    "Written before `rate_floor` and its selection bias existed: it loads, and encodes as it was trained (no bias)."
    from safetensors.torch import load_file
    from mtc_nb.checkpoints import save_checkpoint

    record = json.loads((checkpoint / 'config.json').read_text())
    old_config = {k: v for k, v in record['config'].items() if not k.startswith('rate_floor')}
    state = load_file(checkpoint / 'weights.safetensors')
    current = load_dictionary(checkpoint)
    assert current.cfgs[0].rate_floor > 0 and current.select_bias.abs().sum() > 0
    del state['select_bias']
    old = load_dictionary(save_checkpoint(tmp_path / 'old', 'dictionary', state, old_config))
    assert old.cfgs[0].rate_floor == 0.0 and not old.floored
    x = torch.randn(20, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pre = old.pre_acts(x)
        torch.testing.assert_close(old.encode(x), pre.relu() * (pre.relu() > old.theta[:, None, None]))


def test_a_checkpoint_for_other_activations_says_so(checkpoint):
    with pytest.raises(ValueError, match='expects activations 12→6'):
        load_dictionary(checkpoint, d_in=1280)


@pytest.mark.parametrize('bad', ['nan', 'inf', 'empty'])
def test_bad_activations_stop_before_training(bad):
    x, y = torch.randn(64, 12), torch.randn(64, 6)
    if bad == 'nan':
        x[3, 4] = float('nan')
    if bad == 'inf':
        y[5, 0] = float('inf')
    if bad == 'empty':
        x, y = x[:0], y[:0]
    cfg = DictConfig(d_in=12, d_out=6, d_sae=16, levels=(8, 16), k=3, epochs=1, batch_size=32)
    with pytest.raises(ValueError, match='NaN or Inf|empty'):
        train_dictionaries([cfg], x, y, torch.randn(8, 12), torch.randn(8, 6), progress=False)


@pytest.mark.parametrize(
    'override, message',
    [
        (dict(dict_models='matryoshka_transcoder'), None),  # a single value of a list-valued setting is a list
        (dict(seeds=0), None),
        (dict(dict_k='many'), 'dict_k'),
        (dict(no_such_setting=1), 'no_such_setting'),
    ],
)
def test_settings_are_checked_when_the_profile_loads(override, message):
    if message is None:
        cfg = load_profile('smoke', **override)
        name, value = next(iter(override.items()))
        assert getattr(cfg, name) == [value]
    else:
        with pytest.raises((ValueError, TypeError, KeyError), match=message):
            load_profile('smoke', **override)


def test_a_killed_embedding_resumes_where_it_stopped(tmp_path):
    from mtc_nb.encoders import EmbeddingCache

    paths = []
    for i in range(12):
        paths.append(tmp_path / f'{i}.png')
        Image.fromarray(np.full((10, 10, 3), 20 * i, np.uint8)).save(paths[-1])
    calls = []

    def mean_pixel(batch, fail_at=None):
        calls.append(len(batch))
        if len(calls) == fail_at:
            raise KeyboardInterrupt  # the user's Ctrl-C in the middle of a batch
        return torch.tensor([[float(np.asarray(read_image(p)).mean())] for p in batch])

    cache = EmbeddingCache(tmp_path / 'cache', 'enc')
    with pytest.raises(KeyboardInterrupt):
        cache.embed(paths, lambda b: mean_pixel(b, fail_at=3), batch_size=2, shard_rows=4)
    calls.clear()
    resumed = EmbeddingCache(tmp_path / 'cache', 'enc').embed(paths, mean_pixel, batch_size=2, shard_rows=4)
    assert calls == [2, 2, 2, 2]  # the 4 images of the shard written before the kill are not embedded again
    whole = EmbeddingCache(tmp_path / 'other', 'enc').embed(paths, mean_pixel, batch_size=2, shard_rows=4)
    torch.testing.assert_close(resumed, whole)
    assert not list((tmp_path / 'cache' / 'enc').glob('*.tmp'))


KILL_POINTS = {
    'encoder': ('mtc_nb.stages.encoder', 'adapt_top'),  # the stage layer's names: what its drivers call
    'classifier': ('mtc_nb.stages.classifier', 'train_head'),
    'features': ('mtc_nb.stages.features', 'analyse_dictionary'),
    'benchmark': ('mtc_nb.stages.benchmark', 'run_benchmark'),
}


def test_a_kill_in_each_stage_resumes_to_the_uninterrupted_results(tmp_path, monkeypatch):
    "Killed inside the encoder, the head, mining and the benchmark in turn, the chain ends where a clean run ends."
    import importlib
    from conftest import tiny_profile
    from mtc_nb.manifests import read_manifest

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    cfg = tiny_profile(tmp_path / 'killed')
    for stage, (module, name) in KILL_POINTS.items():
        with monkeypatch.context() as patch:
            patch.setattr(importlib.import_module(module), name, interrupted)
            with pytest.raises(KeyboardInterrupt):
                run_chain(cfg)
        assert read_manifest(cfg, stage) is None  # a stage killed midway is never taken as complete
    resumed, clean = run_chain(cfg), run_chain(tiny_profile(tmp_path / 'clean'))
    for key, value in clean['classifier']['metrics'].items():
        nested = isinstance(value, dict)
        expected = {k: pytest.approx(v) for k, v in value.items()} if nested else pytest.approx(value)
        assert resumed['classifier']['metrics'][key] == expected, key
    for a, b in zip(resumed['dictionaries'], clean['dictionaries']):  # the same machine: the same results
        assert a['name'] == b['name'] and a['fvu'] == pytest.approx(b['fvu'], rel=1e-5, abs=1e-6)
    pd.testing.assert_frame_equal(resumed['benchmark']['table'], clean['benchmark']['table'], rtol=1e-5)
