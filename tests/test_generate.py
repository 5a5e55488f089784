"""`mtc generate` as a user runs it: against an OpenAI-compatible image server on 127.0.0.1 (images, and in turn 401,
429, 500, a refusal, a malformed body), killed and resumed; and from a tiny diffusers pipeline saved to disk."""

import os, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest

from mtc_nb.cli import main
from mtc_nb.panel import index_generated
from mtc_nb.prompts import load_suite, sample_suite
from mtc_nb.testing import LocalChatServer, image_reply

BIN = Path(sys.executable).parent
SUITE_ARGS = ['--per-law', '1', '--phenomena', 'shadows_light', 'buoyancy']  # 7 laws: 7 prompts


def n_prompts() -> int:
    return len(sample_suite(load_suite(), 1, phenomena=['shadows_light', 'buoyancy']))


def generate_args(root: Path, name: str, url: str, *more: str) -> list[str]:
    return ['generate', '--generator', name, '--root', str(root), '--endpoint', url, '--model', 'm', *SUITE_ARGS, *more]


def test_a_folder_filled_from_an_endpoint_is_what_the_benchmark_reads(tmp_path, capsys):
    with LocalChatServer(lambda request, n: image_reply((n * 30 % 255, 80, 80))) as server:
        main(generate_args(tmp_path, 'gen-a', server.url, '--seeds', '0', '1', '--size', '16x16'))
        assert {r['json']['size'] for r in server.requests} == {'16x16'}
        assert all(r['json']['response_format'] == 'b64_json' for r in server.requests)
    assert f"{2 * n_prompts()} images; 0 refused, 0 failed" in capsys.readouterr().out
    images, problems = index_generated(tmp_path)
    assert problems == [] and len(images) == 2 * n_prompts() and set(images.generator) == {'gen-a'}
    prompts = pd.read_csv(tmp_path / 'gen-a' / 'prompts.csv')
    assert set(prompts.phenomenon) == {'shadows_light', 'buoyancy'} and set(prompts.seed) == {0, 1}
    assert images.prompt.notna().all()  # the benchmark resamples whole prompts: each image knows its prompt


def test_every_failure_of_the_endpoint_is_reported_and_the_rest_goes_on(tmp_path, capsys):
    suite = sample_suite(load_suite(), 1, phenomena=['shadows_light', 'buoyancy'])
    refused, limited, broken, garbled = suite.prompt.iloc[:4]

    def respond(request, n):
        prompt = request['prompt']
        if prompt == refused:
            return 400, {'error': {'message': 'rejected by the safety system', 'code': 'content_policy_violation'}}
        if prompt == limited:
            return 429, {'error': {'message': 'rate limited'}}, {'Retry-After': '0'}
        if prompt == broken:
            return 500, {'error': {'message': 'internal error'}}
        if prompt == garbled:
            return 200, {'created': 0, 'data': [{'b64_json': '%%%not base64%%%'}]}
        return image_reply()

    with LocalChatServer(respond) as server:
        main(generate_args(tmp_path, 'gen-b', server.url, '--workers', '2'))
    failures = pd.read_csv(tmp_path / 'gen-b' / 'failures.csv').set_index('prompt_id')
    by_prompt = dict(zip(suite.prompt, suite.prompt_id))
    assert failures.status[by_prompt[refused]] == 'refused' and 'safety' in failures.detail[by_prompt[refused]]
    assert 'HTTP 429' in failures.detail[by_prompt[limited]] and 'HTTP 500' in failures.detail[by_prompt[broken]]
    assert 'malformed image' in failures.detail[by_prompt[garbled]]
    out = capsys.readouterr().out
    assert f"{len(suite) - 4} images; 1 refused, 3 failed" in out
    with LocalChatServer(lambda request, n: (401, {'error': {'message': 'Incorrect API key provided'}})) as server:
        with pytest.raises(SystemExit, match='MTC_IMAGE_API_KEY'):
            main(generate_args(tmp_path, 'gen-b', server.url))
    with LocalChatServer(lambda request, n: image_reply()) as server:  # the next run: the failures, not the refusal
        main(generate_args(tmp_path, 'gen-b', server.url))
        assert len(server.requests) == 3
    assert len(list((tmp_path / 'gen-b').glob('*.png'))) == len(suite) - 1


def test_a_killed_run_resumes_with_only_what_is_missing(tmp_path):
    def slow(request, n):
        time.sleep(0.4)
        return image_reply()

    with LocalChatServer(slow) as server:
        cmd = [str(BIN / 'mtc'), *generate_args(tmp_path, 'gen-c', server.url, '--workers', '1')]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while len(list((tmp_path / 'gen-c').glob('*.png'))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        made = len(list((tmp_path / 'gen-c').glob('*.png')))
        assert 2 <= made < n_prompts()
        asked_before = len(server.requests)
        main(generate_args(tmp_path, 'gen-c', server.url))
        assert len(server.requests) - asked_before == n_prompts() - made  # only the missing ones
    images, problems = index_generated(tmp_path)
    assert len(images) == n_prompts() and problems == []  # every image whole: a partial one is a hidden temp file


def test_a_diffusers_pipeline_on_disk_makes_the_same_image_from_the_same_seed(tmp_path, capsys):
    pytest.importorskip('diffusers')
    from mtc_nb.testing import tiny_pipeline

    pipe = tiny_pipeline(tmp_path / 'model')
    args = ['generate', '--generator', 'tiny', '--root', str(tmp_path), '--pipeline', str(pipe), '--device', 'cpu']
    args += ['--steps', '2', '--per-law', '1', '--phenomena', 'buoyancy', '--seeds', '3']
    main(args)
    files = sorted((tmp_path / 'tiny').glob('*.png'))
    first = {f.name: f.read_bytes() for f in files}
    files[0].unlink()
    main(args)
    assert {f.name: f.read_bytes() for f in sorted((tmp_path / 'tiny').glob('*.png'))} == first
    record = pd.read_json(tmp_path / 'tiny' / 'generation.json', typ='series')
    assert record['backend']['backend'] == 'diffusers' and record['backend']['steps'] == 2
    assert [r['made'] for r in record['runs']] == [len(files), 1]


def test_settings_that_cannot_work_are_refused_before_any_request(tmp_path):
    with pytest.raises(SystemExit, match='either --endpoint'):
        main(['generate', '--generator', 'x', '--root', str(tmp_path)])
    with pytest.raises(SystemExit, match='generator name'):
        main(generate_args(tmp_path, '../up', 'http://127.0.0.1:9/v1'))
    with pytest.raises(SystemExit, match='model_index.json'):
        main(['generate', '--generator', 'x', '--root', str(tmp_path), '--pipeline', str(tmp_path)])
    bad = tmp_path / 'suite.csv'
    bad.write_text('prompt_id,prompt\na,b\n')
    with pytest.raises(SystemExit, match='suite.csv'):
        main(generate_args(tmp_path, 'x', 'http://127.0.0.1:9/v1', '--suite', str(bad)))
    with pytest.raises(SystemExit, match='not phenomena of the suite'):
        main(
            ['generate', '--generator', 'x', '--root', str(tmp_path), '--endpoint', 'http://127.0.0.1:9/v1']
            + ['--model', 'm', '--phenomena', 'shadow']
        )


def test_from_prompts_to_a_failure_report_per_phenomenon(tmp_path):
    "Generate with the stand-in, label in the widget (scripted), train on the labels, benchmark by phenomenon."
    import numpy as np
    from PIL import Image
    from conftest import run_chain, tiny_profile
    from mtc_nb.annotate import Annotator
    from mtc_nb.generate import ImageEndpoint, generate

    suite = sample_suite(load_suite(), 1, phenomena=['shadows_light', 'buoyancy'])
    shadows = set(suite.prompt[suite.phenomenon == 'shadows_light'])

    def respond(request, n):  # the stand-in gets shadows wrong on even seeds, buoyancy only on seed 0
        wrong = request['seed'] % 2 == 0 if request['prompt'] in shadows else request['seed'] == 0
        return image_reply((220, n, 30) if wrong else (30, n, 220), size=(32, 32))  # n: no two images alike

    root = tmp_path / 'generated'
    with LocalChatServer(respond) as server:
        generate(suite, 'stand-in', ImageEndpoint(server.url, 'm', send_seed=True), range(6), root, progress=False)
    annotator = Annotator(root / 'stand-in', seed=0)
    while annotator.current is not None:  # a person's judgement, scripted: red is the failure
        red = np.asarray(Image.open(root / 'stand-in' / annotator.current))[..., 0].mean() > 128
        annotator.press('implausible' if red else 'plausible')
    cfg = tiny_profile(
        tmp_path,
        dataset='labelled',
        image_root=str(root),
        generated_root=str(root),
        benchmark_images=0,
        benchmark_calibration_styles=0,
        head_epochs=30,
    )
    bench = run_chain(cfg)['benchmark']
    phenomena = bench['phenomena'].set_index('phenomenon')
    assert set(phenomena.index) == {'shadows_light', 'buoyancy'} and (phenomena.n == phenomena.prompts * 6).all()
    assert phenomena.corrected['shadows_light'] > phenomena.corrected['buoyancy']
    summary = (cfg.run_dir / 'benchmark' / 'summary.md').read_text()
    assert '## Per phenomenon of the prompt suite' in summary and 'shadows\\_light' in summary
