"""`mtc embed` under `accelerate launch`: two processes on this CPU fill the embedding cache exactly as one does, and
a rerun after a rank died computes only that rank's unfinished shard."""

import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from conftest import run_chain, tiny_profile

BIN = Path(sys.executable).parent
SHARD_ROWS = 16  # 80 images: 5 blocks, so each of two ranks has work


def embed(folder: Path, processes: int = 1) -> str:
    "Run `mtc embed` on the tiny profile under `folder`, alone or under `accelerate launch` with `processes` ranks."
    args = [
        'embed',
        '--profile',
        'smoke',
        '--workers',
        '0',
        '--shard-rows',
        str(SHARD_ROWS),
        '-p',
        'data_dir',
        str(folder / 'data'),
        '-p',
        'figures_dir',
        str(folder / 'fig'),
        '-p',
        'n_images',
        '80',
        '-p',
        'image_size',
        '32',
        '-p',
        'workers',
        '1',
    ]
    cmd = [str(BIN / 'mtc'), *args]
    if processes > 1:
        cmd = [
            str(BIN / 'accelerate'),
            'launch',
            '--multi_gpu',
            '--num_processes',
            str(processes),
            '--num_machines',
            '1',
            '--mixed_precision',
            'no',
            '--dynamo_backend',
            'no',
            str(BIN / 'mtc'),
            *args,
        ]
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1'}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def cache_folder(folder: Path) -> Path:
    (cache,) = (folder / 'data' / 'smoke' / 'cache').iterdir()
    return cache


def rows_by_hash(cache: Path) -> dict:
    index = json.loads((cache / 'index.json').read_text())
    shards = {name: load_file(cache / name)['x'] for name in index['shards']}
    return {h: shards[name][j] for h, (name, j) in index['rows'].items()}


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp('distributed')
    run_chain(tiny_profile(folder, workers=1), upto='scenes')
    return folder


def test_two_ranks_fill_the_cache_as_one_process_does(scenes, tmp_path):
    alone = rows_by_hash(cache_folder(scenes)) if (scenes / 'data' / 'smoke' / 'cache').exists() else None
    assert alone is None  # the scenes stage encodes nothing
    out = embed(scenes)
    assert '1 process(es)' in out
    alone = rows_by_hash(cache_folder(scenes))
    assert len(alone) == 80
    shutil.rmtree(scenes / 'data' / 'smoke' / 'cache')
    out = embed(scenes, processes=2)
    assert '80 images' in out and '2 process(es)' in out, out
    cache = cache_folder(scenes)
    parted = rows_by_hash(cache)
    assert parted.keys() == alone.keys()  # the same images, one row each
    for h, row in alone.items():
        torch.testing.assert_close(parted[h], row, rtol=1e-4, atol=1e-5)  # float32 rounding of another batching
    index = json.loads((cache / 'index.json').read_text())
    assert len(index['shards']) == 5  # one shard per block of 16 images

    # a rank killed while writing: its last shard never reached its name (the write goes through a .tmp file)
    lost = sorted(index['shards'])[2]
    (cache / lost).rename(cache / (lost + '.tmp'))
    (cache / (lost + '.json')).unlink()
    kept = {name: (cache / name).stat().st_mtime_ns for name in index['shards'] if name != lost}
    embed(scenes, processes=2)
    again = json.loads((cache / 'index.json').read_text())
    assert sorted(again['shards']) == sorted(index['shards'])  # the lost block is written again, as the same shard
    assert {name: (cache / name).stat().st_mtime_ns for name in kept} == kept  # the other shards are not touched
    redone = rows_by_hash(cache)
    assert redone.keys() == alone.keys()
    for h, row in alone.items():
        torch.testing.assert_close(redone[h], row, rtol=1e-4, atol=1e-5)
