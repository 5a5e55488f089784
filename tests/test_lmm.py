"The LMM interpreter against a real HTTP chat-completions server on 127.0.0.1."

import json

import pandas as pd
import pytest
from PIL import Image

from mtc_nb.interpret import LMMConfig, LMMInterpreter, PROMPT_VERSION, AnswerCache
from mtc_nb.testing import LocalChatServer


@pytest.fixture
def images(tmp_path):
    for i in range(4):
        Image.new('RGB', (1200, 300), (60 * i, 100, 20)).save(tmp_path / f'im{i}.png')
    return tmp_path


def table(latents=(0,), n=3):
    return pd.DataFrame(
        {'latent': list(latents), 'skipped': False, 'top_ids': [[f'im{i}' for i in range(n)]] * len(latents)}
    )


def interp(srv, tmp_path, **kw):
    return LMMInterpreter(
        LMMConfig(srv.url, 'test-model', **{'max_retries': 3, 'timeout': 5, **kw}), tmp_path / 'cache.jsonl'
    )


def two_pass(commonality='[Commonality: red boxes]', error='[Error: floating boxes]'):
    def respond(req, n):
        text = req['messages'][0]['content'][0]['text']
        return commonality if 'in common' in text else error

    return respond


def test_request_carries_images_prompt_and_sampling(images, monkeypatch):
    monkeypatch.setenv('MTC_LMM_API_KEY', 'sk-test-secret')
    with LocalChatServer(two_pass()) as srv:
        lmm = interp(srv, images)
        out = lmm.interpret(table(), lambda i: images / f'{i}.png')
    assert out.loc[0, ['commonality', 'error', 'flagged', 'status']].tolist() == [
        'red boxes',
        'floating boxes',
        True,
        'ok',
    ]
    first, second = (r['json'] for r in srv.requests)
    assert srv.requests[0]['path'] == '/v1/chat/completions'
    assert {k.lower(): v for k, v in srv.requests[0]['headers'].items()}['authorization'] == 'Bearer sk-test-secret'
    assert first['model'] == 'test-model' and first['temperature'] == 0 and first['seed'] == 0
    parts = first['messages'][0]['content']
    assert [p['type'] for p in parts] == ['text'] + ['image_url'] * 3
    assert all(p['image_url']['url'].startswith('data:image/png;base64,') for p in parts[1:])
    assert 'red boxes' in second['messages'][0]['content'][0]['text']  # pass 2 is given pass 1's commonality
    assert 'wrong object physics or gravity' in second['messages'][0]['content'][0]['text']
    cache = (images / 'cache.jsonl').read_text()
    assert 'sk-test-secret' not in cache and PROMPT_VERSION in cache
    assert lmm.stats['requests'] == 2 and lmm.stats['prompt_tokens'] == 200


def test_no_common_errors_form(images):
    with LocalChatServer(two_pass(error='Looking closely: [No common errors]')) as srv:
        out = interp(srv, images).interpret(table(), lambda i: images / f'{i}.png')
    assert out.loc[0, ['flagged', 'error', 'status']].tolist() == [False, None, 'ok']


@pytest.mark.faults
@pytest.mark.parametrize('code', [429, 500, 503])
def test_retries_transient_errors(images, code):
    ok = two_pass()
    with LocalChatServer(lambda req, n: (code, {'error': {'message': 'busy'}}) if n == 1 else ok(req, n)) as srv:
        out = interp(srv, images).interpret(table(), lambda i: images / f'{i}.png')
    assert out.loc[0, 'status'] == 'ok' and len(srv.requests) == 3  # one failed, retried, then pass 2


def test_bad_replies_are_recorded_not_raised(images):
    def respond(req, n):
        if n == 1:
            return 'I think they are boxes.'  # malformed commonality
        if n == 2:
            return (
                200,
                {
                    'id': 'x',
                    'object': 'chat.completion',
                    'created': 0,
                    'model': 'm',
                    'choices': [
                        {
                            'index': 0,
                            'finish_reason': 'stop',
                            'message': {'role': 'assistant', 'content': None, 'refusal': 'I cannot help.'},
                        }
                    ],
                },
            )
        return (500, 'not json at all')

    with LocalChatServer(respond) as srv:
        lmm = interp(srv, images, max_retries=0)
        out = lmm.interpret(table(latents=(0, 1, 2)), lambda i: images / f'{i}.png')
    assert sorted(out.status) == ['commonality error', 'commonality malformed', 'commonality refused']
    assert lmm.stats['malformed'] == 1 and lmm.stats['refused'] == 1 and lmm.stats['errors'] == 1
    rows = [json.loads(l) for l in (images / 'cache.jsonl').read_text().splitlines()]
    assert sorted(r['status'] for r in rows) == ['malformed', 'refused']  # transport errors are not cached


def test_resume_asks_nothing_twice(images):
    with LocalChatServer(two_pass()) as srv:
        interp(srv, images).interpret(table(latents=(0, 1)), lambda i: images / f'{i}.png')
        assert len(srv.requests) == 4
        with (images / 'cache.jsonl').open('a') as f:
            f.write('{"key": "torn')  # a write cut short by a crash
        again = interp(srv, images)
        out = again.interpret(table(latents=(0, 1, 2)), lambda i: images / f'{i}.png')
    assert len(srv.requests) == 6 and again.stats['cache_hits'] == 4  # only latent 2 was asked
    assert out.commonality.tolist() == ['red boxes'] * 3


def test_a_changed_prompt_or_model_is_not_served_from_cache():
    k = AnswerCache.key(3, ['a'], 'commonality', PROMPT_VERSION, 'm1', {})
    assert k != AnswerCache.key(3, ['a'], 'commonality', 'other-version', 'm1', {})
    assert k != AnswerCache.key(3, ['a'], 'commonality', PROMPT_VERSION, 'm2', {})
    assert k != AnswerCache.key(3, ['b'], 'commonality', PROMPT_VERSION, 'm1', {})


def test_judge_and_detection_score(images):
    def respond(req, n):  # the judge says yes to images 0 and 1 only
        url = req['messages'][0]['content'][1]['image_url']['url']
        return '[Yes]' if url in marks else '[No]'

    from mtc_nb.interpret import image_part

    marks = {image_part(images / f'im{i}.png')['image_url']['url'] for i in (0, 1)}
    with LocalChatServer(respond) as srv:
        lmm = interp(srv, images)
        assert lmm.judge('floating boxes', ['im0', 'im2'], lambda i: images / f'{i}.png') == [True, False]
        assert (
            lmm.detection_score('floating boxes', ['im0', 'im1'], ['im2', 'im3'], lambda i: images / f'{i}.png') == 1.0
        )
        assert (
            lmm.detection_score('floating boxes', ['im0', 'im2'], ['im1', 'im3'], lambda i: images / f'{i}.png') == 0.5
        )


def test_a_remote_endpoint_needs_a_key_from_the_environment(monkeypatch):
    monkeypatch.delenv('MTC_LMM_API_KEY', raising=False)
    with pytest.raises(ValueError, match='MTC_LMM_API_KEY'):
        LMMConfig('https://openrouter.ai/api/v1', 'anthropic/claude-3-haiku').api_key()
    assert LMMConfig('http://127.0.0.1:8000/v1', 'local').api_key() == 'no-key'


@pytest.mark.faults
def test_a_torn_reply_body_is_retried(images):
    "A 200 whose JSON body is cut off (the client raises a JSONDecodeError, not an OpenAI error) is asked again."
    ok = two_pass()

    def respond(req, n):
        return (200, '{"id": "r1", "object": "chat.completion", "choi') if n == 1 else ok(req, n)

    with LocalChatServer(respond) as srv:
        out = interp(srv, images).interpret(table(), lambda i: images / f'{i}.png')
    assert out.loc[0, 'status'] == 'ok' and len(srv.requests) == 3


@pytest.mark.faults
def test_a_reply_without_choices_is_an_error_that_a_rerun_asks_again(images):
    empty = {'id': 'r', 'object': 'chat.completion', 'created': 0, 'model': 'test-model', 'choices': []}
    with LocalChatServer(lambda req, n: (200, empty)) as srv:
        out = interp(srv, images).interpret(table(), lambda i: images / f'{i}.png')
    assert out.loc[0, 'status'] == 'commonality error'  # not "refused", and not cached
    with LocalChatServer(two_pass()) as healthy:
        again = interp(healthy, images).interpret(table(), lambda i: images / f'{i}.png')
    assert again.loc[0, 'status'] == 'ok' and len(healthy.requests) == 2


@pytest.mark.faults
def test_a_malformed_reply_is_recorded_but_asked_again(images):
    with LocalChatServer(lambda req, n: 'no brackets at all') as srv:
        out = interp(srv, images).interpret(table(), lambda i: images / f'{i}.png')
    assert out.loc[0, 'status'] == 'commonality malformed'
    with LocalChatServer(two_pass()) as healthy:
        again = interp(healthy, images).interpret(table(), lambda i: images / f'{i}.png')
    assert again.loc[0, 'status'] == 'ok' and len(healthy.requests) == 2


@pytest.mark.faults
def test_a_refused_connection_is_an_error_and_the_run_goes_on(images):
    import socket

    with socket.socket() as s:  # a port that nothing listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    lmm = LMMInterpreter(
        LMMConfig(f'http://127.0.0.1:{port}/v1', 'test-model', max_retries=0, timeout=2), images / 'cache.jsonl'
    )
    out = lmm.interpret(table(latents=(0, 1)), lambda i: images / f'{i}.png')
    assert list(out.status) == ['commonality error'] * 2 and lmm.stats['errors'] == 2
    assert not (images / 'cache.jsonl').exists() or not (images / 'cache.jsonl').read_text().strip()


@pytest.mark.faults
def test_a_timed_out_request_is_an_error_and_is_not_cached(images):
    import time as clock

    def slow(req, n):
        clock.sleep(1.5)
        return '[Commonality: late]'

    with LocalChatServer(slow) as srv:
        lmm = interp(srv, images, max_retries=0, timeout=0.3)
        out = lmm.interpret(table(), lambda i: images / f'{i}.png')
    assert out.loc[0, 'status'] == 'commonality error' and lmm.stats['errors'] == 1
    assert not (images / 'cache.jsonl').exists() or not (images / 'cache.jsonl').read_text().strip()  # nothing cached


@pytest.mark.faults
def test_a_429_waits_as_long_as_retry_after_says(images):
    import time as clock

    ok = two_pass()

    def respond(req, n):
        return (429, {'error': {'message': 'slow down'}}, {'Retry-After': '1'}) if n == 1 else ok(req, n)

    with LocalChatServer(respond) as srv:
        start = clock.perf_counter()
        out = interp(srv, images).interpret(table(), lambda i: images / f'{i}.png')
        waited = clock.perf_counter() - start
    assert out.loc[0, 'status'] == 'ok' and len(srv.requests) == 3 and waited >= 1.0
