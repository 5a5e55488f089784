"""Bad input on the user's folders: each bad file is left out with its reason, the rest of the run goes on."""
import io
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from conftest import run_chain
from mtc_nb.core import load_profile, run_stages
from mtc_nb.encoders import tiny_clip, load_images, LiteEncoder
from mtc_nb.scenes import draw_attributes, render, read_image, ImageReadError


def png_claiming(width: int, height: int) -> bytes:
    "A PNG whose header claims width x height (a decompression bomb's header) over a few bytes of data."
    chunk = lambda kind, data: (struct.pack('>I', len(data)) + kind + data
                                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\0' * 16)) + chunk(b'IEND', b'')


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
        folder = tmp_path/'images'/sub/'genA'
        folder.mkdir(parents=True)
        for i in range(30):
            image = render(draw_attributes(rng, 'road'), mode, int(rng.integers(48, 91)))
            if i % 2: Image.fromarray(image).save(folder/f'{i}.png')
            else: (folder/f'{i}.jpg').write_bytes(jpeg_bytes(image))
    bad = tmp_path/'images'/'human_error'/'genA'
    for name, (content, _) in BAD_FILES.items():
        if content is not None: (bad/name).write_bytes(content)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(bad/'dot.png')
    whole = jpeg_bytes(render(draw_attributes(rng, 'road'), None, 64))
    (bad/'truncated.jpg').write_bytes(whole[:len(whole) // 2])
    (bad/'._0.jpg').write_bytes(b'\x00\x05\x16\x07\x00\x02')  # a macOS resource fork: never read
    clip = tiny_clip(tmp_path/'clip')
    return load_profile('paper', image_root=str(tmp_path/'images'), clip_path=str(clip), data_dir=str(tmp_path/'data'),
                        figures_dir=str(tmp_path/'fig'), head_epochs=3, head_batch=8, splits=[0.6, 0.2, 0.2])


def test_a_messy_folder_runs_and_reports_each_bad_file(messy_cfg, monkeypatch):
    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    res = run_chain(messy_cfg, upto='classifier')['classifier']
    assert res['h2'].shape == (60, 12)  # every good photo, whatever its size, in batches of mixed sizes
    skipped = json.loads((messy_cfg.run_dir/'scenes'/'skipped.json').read_text())
    reasons = {s['file'].split('/')[-1]: s['reason'] for s in skipped}
    assert sorted(reasons) == sorted(BAD_FILES)  # the resource fork is not an image file at all
    for name, (_, word) in BAD_FILES.items(): assert word in reasons[name], (name, reasons[name])
    stage = json.loads((messy_cfg.run_dir/'scenes'/'stage.json').read_text())
    assert stage['n_skipped'] == len(BAD_FILES) and stage['n_images'] == 60


def test_mixed_sizes_reach_the_encoders(tmp_path):
    paths = []
    for i, size in enumerate((40, 64, 97)):
        paths.append(tmp_path/f'{i}.png')
        Image.fromarray(np.full((size, size + 3, 3), 60 * i, np.uint8)).save(paths[-1])
    images = load_images(paths)
    assert isinstance(images, list) and [a.shape for a in images] == [(40, 43, 3), (64, 67, 3), (97, 100, 3)]
    assert load_images(paths, size=32).shape == (3, 32, 32, 3)
    x = LiteEncoder(image_size=64).preprocess(images)
    assert x.shape == (3, 3, 64, 64)
    # each image alone gives what it gives in the mixed batch
    torch.testing.assert_close(x[1:2], LiteEncoder(image_size=64).preprocess(load_images(paths[1:2])))


def test_read_image_fixes_what_pil_gets_silently_wrong(tmp_path):
    Image.fromarray(np.full((16, 16), 30000, np.uint16)).save(tmp_path/'grey16.png')
    assert abs(np.asarray(read_image(tmp_path/'grey16.png')).mean() - 30000 / 65535 * 255) < 1  # not 255 (white)
    tall = Image.fromarray(np.zeros((20, 10, 3), np.uint8))
    exif = tall.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    tall.save(tmp_path/'turned.jpg', exif=exif)
    assert read_image(tmp_path/'turned.jpg').size == (20, 10)
    rgba = np.zeros((12, 12, 4), np.uint8)  # fully transparent: white, not black
    Image.fromarray(rgba, 'RGBA').save(tmp_path/'clear.png')
    assert np.asarray(read_image(tmp_path/'clear.png')).min() == 255
    (tmp_path/'bomb.png').write_bytes(png_claiming(30000, 30000))
    with pytest.raises(ImageReadError, match='too large'): read_image(tmp_path/'bomb.png')


def test_an_explicit_clip_path_beats_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv('MTC_CLIP_PATH', str(tmp_path/'from_env'))
    assert load_profile('paper').clip_path == str(tmp_path/'from_env')  # the environment beats settings.ini
    assert load_profile('paper', clip_path=str(tmp_path/'given')).clip_path == str(tmp_path/'given')


def test_reproduce_checks_its_inputs_before_any_stage(tmp_path, monkeypatch):
    monkeypatch.delenv('MTC_CLIP_PATH', raising=False)
    where = dict(data_dir=str(tmp_path/'data'), figures_dir=str(tmp_path/'fig'))
    (tmp_path/'images'/'human_correct').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='No CLIP weights'):
        run_stages('paper', clip_path=str(tmp_path/'nowhere'), image_root=str(tmp_path/'images'), **where)
    clip = tiny_clip(tmp_path/'clip')
    with pytest.raises(FileNotFoundError, match='human_error'):
        run_stages('paper', clip_path=str(clip), image_root=str(tmp_path/'images'), **where)
    assert not (tmp_path/'fig').exists() and not (tmp_path/'data').exists()  # nothing written anywhere
