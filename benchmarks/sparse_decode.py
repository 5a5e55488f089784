"""What does the sparse decode win? A BatchTopK dictionary keeps k of its latents per sample, so its decoder's three
products (the reconstruction f W_dec, the decoder gradient fᵀ dŷ, the latent gradient dŷ W_decᵀ) are sums over a few
percent of the latents. The fused trainer computes them through one `embedding_bag` over the active latents and its
backward (`mtc_nb.training.SparseDecode`, what sparsify does) when at most SPARSE_DECODE_MAX_DENSITY of the latents
are active, and densely otherwise.

Printed, for each `--kind` and `--k`: (1) the three products on one batch of random latents of that shape, dense
beside sparse; (2) the whole fused training step, each of our dictionaries trained on the default run's activations
for `--warm` steps (so that latents die as they do in a real run), then timed with the decode forced dense and forced
sparse in alternating rounds on the same batches. Milliseconds, best of `--repeats` rounds, and samples/s.

    python benchmarks/sparse_decode.py [--kinds sae transcoder] [--ks 32 100] [--warm 400] [--threads 1]
"""

import argparse, time

import torch
import torch.nn.functional as F

import mtc_nb.training as training
from mtc_nb.classifier import load_activations
from mtc_nb.core import load_profile
from mtc_nb.dictionaries import DictConfig, dictionary_model


def best_ms(fn, repeats: int, calls: int = 20) -> float:
    "The fastest mean milliseconds per call of `fn` over `repeats` rounds of `calls` calls (after one warm-up call)."
    fn()
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls * 1e3)
    return min(rounds)


def product_times(batch: int, d_sae: int, d_out: int, k: int, repeats: int) -> dict:
    "{product: (dense ms, sparse ms)} on random latents with k active per sample."
    gen = torch.Generator().manual_seed(0)
    W_dec = torch.randn(d_sae, d_out, generator=gen)
    grad_out = torch.randn(batch, d_out, generator=gen)
    active = torch.rand(batch, d_sae, generator=gen).topk(k, dim=1).indices
    f = torch.zeros(batch, d_sae).scatter_(1, active, torch.rand(batch, k, generator=gen))
    rows, cols = f.nonzero(as_tuple=True)
    offsets = torch.searchsorted(rows, torch.arange(batch))
    W_leaf = W_dec.clone().requires_grad_()
    acts = f[rows, cols].requires_grad_()

    def bag(W, a):
        return F.embedding_bag(cols, W, offsets, per_sample_weights=a, mode='sum')

    def both_grads():
        with torch.enable_grad():
            return torch.autograd.grad(bag(W_leaf, acts), (W_leaf, acts), grad_out)

    return {
        'decode f W_dec': (best_ms(lambda: f @ W_dec, repeats), best_ms(lambda: bag(W_dec, acts.detach()), repeats)),
        'both gradients (fᵀ dŷ, dŷ W_decᵀ)': (
            best_ms(lambda: (f.T @ grad_out, grad_out @ W_dec.T), repeats),
            best_ms(both_grads, repeats),  # its forward included: the trainer reuses the decode's
        ),
    }


def step_times(kind: str, k: int, x, y, epochs: int, warm: int, steps: int, repeats: int) -> dict:
    "Dead fraction when timed, and the fused step's best ms with the decode forced dense and forced sparse."
    c = DictConfig(kind=kind, d_in=x.shape[1], d_out=y.shape[1], k=k, epochs=epochs).validate()
    model = dictionary_model([c])
    model.init_from_data(x, y)
    model.train()
    opt, sched, _ = training.make_optimizer(model, c, epochs * (len(x) // c.batch_size))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    batches = [order[i : i + c.batch_size] for i in range(0, len(x) - c.batch_size + 1, c.batch_size)]
    step = 0

    def run(n: int) -> float:
        nonlocal step
        start = time.perf_counter()
        for _ in range(n):
            idx = batches[step % len(batches)]
            training.train_step(model, opt, x[idx], y[idx])
            sched.step()
            step += 1
        return (time.perf_counter() - start) / n * 1e3

    run(warm)
    dead = float((model.since_fired > c.dead_steps).float().mean())
    kept = training.SPARSE_DECODE_MAX_DENSITY
    times = {'dense': [], 'sparse': []}
    for _ in range(repeats):
        for path, density in (('dense', -1.0), ('sparse', 1.0)):  # below every density / above every density
            training.SPARSE_DECODE_MAX_DENSITY = density
            times[path].append(run(steps))
    training.SPARSE_DECODE_MAX_DENSITY = kept
    return {'dead': dead, 'batch': c.batch_size, **{p: min(t) for p, t in times.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--profile', default='default', help="whose activations to train on (the profile's run)")
    ap.add_argument('--kinds', nargs='+', default=['sae', 'transcoder'])
    ap.add_argument('--ks', nargs='+', type=int, default=[32, 100])
    ap.add_argument('--warm', type=int, default=400, help='training steps before timing')
    ap.add_argument('--steps', type=int, default=40, help='steps per timed round')
    ap.add_argument('--repeats', type=int, default=4)
    ap.add_argument('--threads', type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_profile(args.profile)
    train = load_activations(cfg.run_dir / 'activations', 'train')[0]
    print(
        f"{len(train['h2'])} training pairs of the {args.profile} run, 2,048 latents, batch 64, {args.threads} "
        f"thread(s), torch {torch.__version__}; ms, best of {args.repeats} rounds"
    )
    print(f"{'kind':12s} {'k':>4s} {'product / step':36s} {'dense':>8s} {'sparse':>8s} {'speed-up':>8s}")
    for kind in args.kinds:
        x = train['h2']
        y = x if 'sae' in kind else train['h1']
        for k in args.ks:
            for name, (dense, sparse) in product_times(64, 2048, y.shape[1], k, args.repeats).items():
                print(f"{kind:12s} {k:4d} {name:36s} {dense:8.2f} {sparse:8.2f} {dense / sparse:7.2f}×")
            r = step_times(kind, k, x, y, cfg.dict_epochs, args.warm, args.steps, args.repeats)
            per_s = lambda ms: r['batch'] / ms * 1e3
            print(
                f"{kind:12s} {k:4d} {'training step (' + format(r['dead'], '.0%') + ' dead, 8-step window)':36s} "
                f"{r['dense']:8.2f} {r['sparse']:8.2f} {r['dense'] / r['sparse']:7.2f}×   "
                f"samples/s {per_s(r['dense']):,.0f} → {per_s(r['sparse']):,.0f}"
            )


if __name__ == '__main__':
    main()
