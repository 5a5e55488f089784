"""Where our fused training step's time goes: what its sparse decode wins and what its AuxK term costs.

A BatchTopK dictionary keeps k of its latents per sample, so its decoder's three products (the reconstruction f W_dec,
the decoder gradient fᵀ dŷ, the latent gradient dŷ W_decᵀ) are sums over a few percent of the latents. The fused
trainer computes them through one `embedding_bag` over the active latents and its backward
(`mtc_nb.training.SparseDecode`, as sparsify decodes) when at most SPARSE_DECODE_MAX_DENSITY of the latents are active,
and densely otherwise. AuxK (Gao et al.) adds products over the dead latents, few of which are active (their
pre-activations are mostly negative): a sparse decode computes them over the active entries in its own pass when at
most SPARSE_AUXK_MAX_DENSITY of them are, else densely. sparsify's trainer runs no AuxK by default (`auxk_alpha = 0`).

Printed, for each `--kinds` and `--ks`: (1) the decoder's products on one batch of random latents of that shape, dense
beside sparse; (2) the whole step of one of our dictionaries trained on the default run's activations for `--warm`
steps (so that latents die as they do in a real run), then timed in alternating rounds on the same batches with the
decode forced dense, forced sparse (AuxK dense), sparse with AuxK in its pass, and sparse with AuxK skipped; and the
share of AuxK's selected latents that are active. Milliseconds, best of `--repeats` rounds.

    python benchmarks/step_cost.py [--kinds sae transcoder] [--ks 32 100] [--warm 600] [--threads 1]
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
    "Dead fraction when timed, and the fused step's best ms: decode dense, sparse, and sparse with AuxK skipped."
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
    dead = float((model.since_fired > c.dead_window).float().mean())
    kept = training.SPARSE_DECODE_MAX_DENSITY, training.SPARSE_AUXK_MAX_DENSITY, model.aux_select
    select = model.aux_select
    variants = {  # (decode's and AuxK's density bounds: below or above every density, AuxK's latent selection)
        'dense decode': (-1.0, -1.0, select),
        'sparse decode': (1.0, -1.0, select),
        'sparse, sparse AuxK': (1.0, 1.0, select),
        'sparse, no AuxK': (1.0, 1.0, lambda pre: None),  # no latent selected: no AuxK products
    }
    times = {name: [] for name in variants}
    with torch.no_grad():
        sel = select(model.pre_acts(x[batches[0]]))
    aux_density = float((sel[0] > 0).float().mean()) if sel is not None else 0.0
    for _ in range(repeats):
        for name, (decode, auxk, selection) in variants.items():
            training.SPARSE_DECODE_MAX_DENSITY, training.SPARSE_AUXK_MAX_DENSITY, model.aux_select = (
                decode,
                auxk,
                selection,
            )
            times[name].append(run(steps))
    training.SPARSE_DECODE_MAX_DENSITY, training.SPARSE_AUXK_MAX_DENSITY, model.aux_select = kept
    return {'dead': dead, 'aux_density': aux_density, 'batch': c.batch_size, **{n: min(t) for n, t in times.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--profile', default='default', help="whose activations to train on (the profile's run)")
    ap.add_argument('--kinds', nargs='+', default=['sae', 'transcoder'])
    ap.add_argument('--ks', nargs='+', type=int, default=[32, 100])
    ap.add_argument('--warm', type=int, default=600, help='training steps before timing')
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
    for kind in args.kinds:
        x = train['h2']
        y = x if 'sae' in kind else train['h1']
        for k in args.ks:
            print(f"\n{kind}, k = {k}")
            for name, (dense, sparse) in product_times(64, 2048, y.shape[1], k, args.repeats).items():
                print(f"  {name:36s} dense {dense:6.2f}  sparse {sparse:6.2f}  ({dense / sparse:.2f}×)")
            r = step_times(kind, k, x, y, cfg.dict_epochs, args.warm, args.steps, args.repeats)
            print(
                f"  training step, {r['dead']:.0%} of latents dead (8-step window) after {args.warm} steps, "
                f"{r['aux_density']:.1%} of AuxK's selected latents active:"
            )
            for name in ('dense decode', 'sparse decode', 'sparse, sparse AuxK', 'sparse, no AuxK'):
                ms = r[name]
                print(f"    {name:20s} {ms:6.1f} ms  {r['batch'] / ms * 1e3:6,.0f} samples/s")
            dense_auxk = r['sparse decode'] - r['sparse, no AuxK']
            sparse_auxk = r['sparse, sparse AuxK'] - r['sparse, no AuxK']
            print(
                f"  sparse decode: {r['dense decode'] / r['sparse decode']:.2f}× the dense step; AuxK: "
                f"{dense_auxk:.1f} ms dense ({dense_auxk / r['sparse decode']:.0%} of that step), "
                f"{sparse_auxk:.1f} ms sparse ({sparse_auxk / r['sparse, sparse AuxK']:.0%} of that step)"
            )


if __name__ == '__main__':
    main()
