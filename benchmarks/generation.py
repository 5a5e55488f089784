"""How fast `mtc generate` fills a folder: against an OpenAI-compatible stand-in on 127.0.0.1 that answers after a set
latency (what a real endpoint's time per image would be), at several concurrency limits, beside the ideal rate
(workers ÷ latency); and from a tiny random diffusers pipeline on this machine's CPU, beside the same pipeline called
directly (the bookkeeping's cost).

    python benchmarks/generation.py [--images 32] [--latency 0.25]
"""

import argparse, tempfile, time
from pathlib import Path

import pandas as pd

from mtc_nb.generate import ImageEndpoint, LocalPipeline, generate
from mtc_nb.prompts import load_suite
from mtc_nb.testing import LocalChatServer, image_reply, tiny_pipeline


def endpoint_rate(suite: pd.DataFrame, workers: int, latency: float) -> float:
    "Images per second of `generate` against a stand-in answering each request after `latency` seconds."

    def slow(request, n):
        time.sleep(latency)
        return image_reply((n % 255, 90, 160), size=(256, 256))

    with tempfile.TemporaryDirectory() as root, LocalChatServer(slow) as server:
        start = time.perf_counter()
        generate(suite, 'bench', ImageEndpoint(server.url, 'm', max_workers=workers), [0], root, progress=False)
        return len(suite) / (time.perf_counter() - start)


def pipeline_rates(suite: pd.DataFrame, steps: int) -> tuple[float, float]:
    """(images per second through `generate`, calling the pipeline directly) of a tiny random pipeline on the CPU,
    each timing with its one load from disk."""
    import torch

    with tempfile.TemporaryDirectory() as root:
        backend = LocalPipeline(str(tiny_pipeline(Path(root) / 'model')), device='cpu', steps=steps)
        start = time.perf_counter()  # both timings load the pipeline from disk once
        pipe = backend.load()
        for i, prompt in enumerate(suite.prompt):
            pipe(prompt, num_inference_steps=steps, generator=torch.Generator().manual_seed(i))
        direct = len(suite) / (time.perf_counter() - start)
        start = time.perf_counter()
        generate(suite, 'bench', backend, [0], root, progress=False)
        return len(suite) / (time.perf_counter() - start), direct


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--images', type=int, default=32)
    ap.add_argument('--latency', type=float, default=0.25, help="the stand-in endpoint's seconds per image")
    a = ap.parse_args()
    suite = load_suite().head(a.images)
    rows = []
    for workers in (1, 4, 8):
        rate = endpoint_rate(suite, workers, a.latency)
        ideal = workers / a.latency
        rows.append({'back end': f'endpoint, {workers} in flight', 'images/s': rate, 'ideal images/s': ideal})
    through, direct = pipeline_rates(suite, steps=4)
    rows.append({'back end': 'tiny diffusers pipeline (CPU, 4 steps)', 'images/s': through, 'ideal images/s': direct})
    print(f"{len(suite)} prompts; endpoint latency {a.latency} s per image; ideal: workers / latency, or the pipeline")
    print("called directly without generate's bookkeeping")
    print(pd.DataFrame(rows).round(2).to_string(index=False))


if __name__ == '__main__':
    main()
