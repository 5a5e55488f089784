"""What does AuxK cost an SAE's training step? Our BatchTopK SAE is trained on the default run's h2 for `--warm`
steps (so that latents die as they do in a real run), then its fused step is timed as it is and with the AuxK term
skipped (the latents it would select replaced by none), alternating rounds on the same batches.

sparsify's trainer runs no AuxK by default (`auxk_alpha = 0`), so this is the part of the speed gap to it that is our
choice of keeping latents alive, not how we multiply. Printed: dead latents when timed, milliseconds per step, best of
`--repeats` rounds, and samples/s.

    python benchmarks/auxk_cost.py [--k 32] [--kind sae] [--warm 600] [--threads 1] [--profile default]
"""

import argparse, time

import torch

from mtc_nb.classifier import load_activations
from mtc_nb.core import load_profile
from mtc_nb.dictionaries import DictConfig, dictionary_model
from mtc_nb.training import make_optimizer, train_step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--profile', default='default')
    ap.add_argument('--kind', default='sae', choices=['sae', 'matryoshka_sae', 'transcoder', 'matryoshka_transcoder'])
    ap.add_argument('--k', type=int, default=32)
    ap.add_argument('--warm', type=int, default=600, help='training steps before timing')
    ap.add_argument('--steps', type=int, default=50, help='steps per timed round')
    ap.add_argument('--repeats', type=int, default=4)
    ap.add_argument('--threads', type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_profile(args.profile)
    train = load_activations(cfg.run_dir / 'activations', 'train')[0]
    x = train['h2']
    y = x if 'sae' in args.kind else train['h1']
    c = DictConfig(kind=args.kind, d_in=x.shape[1], d_out=y.shape[1], k=args.k, epochs=cfg.dict_epochs).validate()
    model = dictionary_model([c])
    steps_total = c.epochs * (len(x) // c.batch_size)
    opt, sched, _ = make_optimizer(model, c, steps_total)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    batches = [order[i : i + c.batch_size] for i in range(0, len(x) - c.batch_size + 1, c.batch_size)]
    step = 0

    def run(n: int) -> float:
        nonlocal step
        start = time.perf_counter()
        for _ in range(n):
            idx = batches[step % len(batches)]
            train_step(model, opt, x[idx], y[idx])
            sched.step()
            step += 1
        return (time.perf_counter() - start) / n * 1e3

    run(args.warm)
    dead = float((model.since_fired > c.dead_steps).float().mean())
    with_auxk, without = [], []
    select = model.aux_select
    for _ in range(args.repeats):
        model.aux_select = select
        with_auxk.append(run(args.steps))
        model.aux_select = lambda pre: None  # AuxK skipped: no latent selected, no AuxK products
        without.append(run(args.steps))
    model.aux_select = select
    print(f"{args.kind}, k = {args.k}, {args.threads} thread(s), after {args.warm} steps: {dead:.1%} of latents dead")
    for name, ms in (('with AuxK', min(with_auxk)), ('AuxK skipped', min(without))):
        print(f"  {name:14s} {ms:6.1f} ms/step  {c.batch_size / ms * 1e3:7.0f} samples/s")
    print(f"  AuxK's share of the step: {1 - min(without) / min(with_auxk):.0%}")


if __name__ == '__main__':
    main()
