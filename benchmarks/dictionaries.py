"""Dictionary training speed, each figure beside its comparison, all ratios from this one run (CPU);
step times are the median of 5 repetitions.

1. paper_repo: our training step vs a straightforward re-implementation of the paper code's loop (the
   reference below: TensorDataset + DataLoader batches, five decoders, and the paper loop's per-step
   bookkeeping: level losses and active shares read back with `.item()`, a progress-bar postfix).
2. Canonical Matryoshka step vs a plain TopK (one level) transcoder step of the same width; and the
   library's fused backward (`training_loss`, a torch.autograd.Function) vs autograd's gradient of the same loss.
3. 8 configs (an L0 sweep x seeds) trained in one pass vs the same 8 trained one after another.
4. The dictionaries stage's groups (the default profile's six for one seed: a stack of the 4-point L0 sweep,
   paper_repo and four baselines), trained one after another in one process with 2 threads vs side by side in
   two 1-thread worker processes (what `dict_workers = auto` does on 2 cores), wall time; the workers' start (paid
   once per stage) is printed apart.
5. Samples/s, and the ratio of a canonical step to the time of its GEMMs alone; the bound that the
   8 models' GEMMs and AdamW updates put on any one-pass speed-up (stacking amortises per-step overhead,
   not arithmetic or memory traffic);
   the floor of an exact paper_repo step (its matrix products and the optimizer update alone: our clipping
   costs only 32x32 Gram matrices), which caps the speed-up any exact trainer can have over the reference.

    .venv/bin/python benchmarks/dictionaries.py [--steps 40] [--group-steps 200] [--d-in 1280] [--d-out 256]
"""

import argparse, dataclasses, multiprocessing, statistics, time
from concurrent.futures import ProcessPoolExecutor
import torch, torch.nn as nn, torch.nn.functional as F
from tqdm import tqdm
from torch.utils.data import DataLoader, TensorDataset
from mtc_nb.dictionaries import DictConfig, paper_repo_config, dictionary_model
from mtc_nb.training import train_dictionaries, make_optimizer, train_step, _group
from mtc_nb.core import load_profile
from mtc_nb.stages.dictionaries import stage_configs, _group_cost


class ReferencePaperTranscoder(nn.Module):
    "The paper code's model written the straightforward way (same math as mtc_nb's paper_repo)."

    def __init__(self, d_in, d_out, levels=(128, 256, 512, 1024, 2048), ks=(16, 32, 64, 128, 256)):
        super().__init__()
        self.levels, self.ks = levels, ks
        self.encoder = nn.Linear(d_in, levels[-1])
        self.decoders = nn.ModuleList([nn.Linear(m, d_out) for m in levels])

    def forward(self, x):
        z = self.encoder(x)
        z = F.relu(z) + (z > 1).float()
        sparse = torch.zeros_like(z)
        start = 0
        for end, k in zip(self.levels, self.ks):  # top-k by |value| in each block: a 0/1 mask, then written back
            blk = z[:, start:end]
            mask = torch.zeros_like(blk)
            mask.scatter_(1, torch.topk(blk.abs(), k, dim=1).indices, 1.0)
            sparse[:, start:end] = blk * mask
            start = end
        return sparse, [dec(sparse[:, :m]) for dec, m in zip(self.decoders, self.levels)]


def reference_epoch(model, opt, x, y, steps, batch=32):
    """The paper code's training loop: DataLoader batches; per step the weighted level losses, L1, clipping,
    and the bookkeeping it does every step (each level's loss and share of active latents read back with
    .item(), running totals, progress-bar postfix)."""
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)
    weights = [0.1, 0.15, 0.2, 0.25, 0.3]
    level_loss, level_active, totals, n = [0.0] * 5, [0.0] * 5, [0.0, 0.0, 0.0], 0
    with tqdm(loader, desc='reference epoch', leave=False) as bar:
        for xb, yb in bar:
            z, outs = model(xb)
            recon = 0
            for i, o in enumerate(outs):
                li = F.mse_loss(o, yb)
                recon = recon + weights[i] * li
                level_loss[i] += li.item()
            sparse = 0.01 * z.abs().mean()
            loss = recon + sparse
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            totals[0] += loss.item()
            totals[1] += recon.item()
            totals[2] += sparse.item()
            for i, m in enumerate(model.levels):
                level_active[i] += (z[:, :m] != 0).float().mean().item()
            bar.set_postfix(
                {'loss': f"{loss.item():.4f}", 'recon': f"{recon.item():.4f}", 'sparse': f"{sparse.item():.6f}"}
            )
            n += 1
            if n >= steps:
                break
    return totals[0] / n


def autograd_step(model, opt, x, y):
    "`train_step` with autograd's gradient of `model.loss` in place of the fused Function's (`training_loss`)."
    loss, _ = model.loss(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    model.remove_parallel_grad()
    opt.step()
    model.constrain()


def our_steps(model, opt, x, y, steps, batch, step=train_step):
    perm = torch.randperm(len(x))
    for i in range(steps):
        b = perm[(i * batch) % (len(x) - batch) :][:batch]
        step(model, opt, x[b], y[b])


def stage_groups(d_in, d_out):
    "The default profile's dictionary groups for one seed (the stage's configs, stacked as the stage stacks them)."
    cfgs = stage_configs(load_profile('default', seeds=[0]), d_in, d_out)
    return [[cfgs[i] for i in idx] for idx in _group(cfgs)]


def train_group(cfgs, n, threads=None):
    "Train one group on n random samples of its widths (one epoch); returns seconds. The workers' task."
    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n + 256, cfgs[0].d_in, generator=gen).relu()
    y = torch.randn(n + 256, cfgs[0].d_out, generator=gen).relu()
    one_epoch = [dataclasses.replace(c, epochs=1) for c in cfgs]
    t0 = time.perf_counter()
    train_dictionaries(one_epoch, x[:n], y[:n], x[n:], y[n:], progress=False)
    return time.perf_counter() - t0


def groups_side_by_side(groups, n, workers=2):
    """(seconds to start `workers` spawned processes, wall seconds for them to train `groups` side by side with one
    thread each, the longest first)."""
    t0 = time.perf_counter()
    spawn = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        list(pool.map(time.sleep, [0.5] * workers))  # every worker started, torch imported
        t_start = time.perf_counter() - t0 - 0.5
        t0 = time.perf_counter()
        list(pool.map(train_group, groups, [n] * len(groups), [1] * len(groups)))
        return t_start, time.perf_counter() - t0


def timeit(fn, reps=5):
    """Median wall time of `reps` calls, after one warm-up call (the median keeps one disturbed call from moving a
    ratio)."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--steps', type=int, default=40)
    ap.add_argument('--d-in', type=int, default=1280)
    ap.add_argument('--d-out', type=int, default=256)
    ap.add_argument('--group-steps', type=int, default=200, help="steps of every stage group in comparison 4")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    N = 4096
    x = torch.randn(N, a.d_in).relu()
    y = torch.randn(N, a.d_out).relu()
    S = a.steps
    rows = []

    ref = ReferencePaperTranscoder(a.d_in, a.d_out)
    ropt = torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=1e-5)
    t_ref = timeit(lambda: reference_epoch(ref, ropt, x, y, S)) / S
    pc = paper_repo_config(a.d_in, a.d_out)
    ours = dictionary_model([pc])
    oopt = make_optimizer(ours, pc, S)[0]  # the library's optimizer
    t_ours = timeit(lambda: our_steps(ours, oopt, x, y, S, 32)) / S
    rows.append(('paper_repo step, batch 32: reference loop', t_ref, 'ours', t_ours))

    def canon(kind, levels):
        c = DictConfig(kind=kind, d_in=a.d_in, d_out=a.d_out, levels=levels, k=64)
        m = dictionary_model([c])
        m.init_from_data(x, y)
        o = make_optimizer(m, c, S)[0]
        return timeit(lambda: our_steps(m, o, x, y, S, 64)) / S, m

    t_topk, _ = canon('transcoder', (2048,))
    t_mat, mat = canon('matryoshka_transcoder', (128, 256, 512, 1024, 2048))
    rows.append(('plain TopK transcoder step, batch 64', t_topk, 'Matryoshka step', t_mat))
    c = DictConfig(d_in=a.d_in, d_out=a.d_out, k=64)
    m = dictionary_model([c])
    m.init_from_data(x, y)
    o = make_optimizer(m, c, S)[0]
    t_auto = timeit(lambda: our_steps(m, o, x, y, S, 64, step=autograd_step)) / S
    rows.append(('Matryoshka step, autograd backward', t_auto, 'fused backward (training_loss)', t_mat))

    cfgs = [
        DictConfig(d_in=a.d_in, d_out=a.d_out, k=k, seed=s, epochs=1, batch_size=64)
        for k in (16, 32, 64, 124)
        for s in (0, 1)
    ]
    n = 64 * S
    t0 = time.perf_counter()
    train_dictionaries(cfgs, x[:n], y[:n], x[-256:], y[-256:], progress=False)
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in cfgs:
        train_dictionaries([c], x[:n], y[:n], x[-256:], y[-256:], progress=False)
    t_seq = time.perf_counter() - t0
    rows.append((f'8 configs one after another ({S} steps each)', t_seq, '8 configs in one pass', t_one))

    groups = sorted(stage_groups(a.d_in, a.d_out), key=lambda g: -_group_cost(g))  # as the stage orders them
    n_group = 64 * a.group_steps
    t0 = time.perf_counter()
    for g in groups:
        train_group(g, n_group)
    t_groups_one = time.perf_counter() - t0
    t_workers_start, t_groups_two = groups_side_by_side(groups, n_group)
    rows.append(
        (f'{len(groups)} stage groups, 1 process x 2 threads', t_groups_one, '2 workers x 1 thread', t_groups_two)
    )

    # the floor of an exact paper_repo step: its matrix products (encoder, five decoders, their gradients) and the fused
    # AdamW update, with none of the masking, activation, loss or clipping around them
    fl = ReferencePaperTranscoder(a.d_in, a.d_out)
    fopt = torch.optim.AdamW(fl.parameters(), lr=1e-4, weight_decay=1e-5, fused=True)

    def floor_step(xb=x[:32]):
        z = fl.encoder(xb)
        sum(dec(z[:, :m]).sum() for dec, m in zip(fl.decoders, fl.levels)).backward()
        fopt.step()
        fopt.zero_grad(set_to_none=True)

    t_floor = timeit(lambda: [floor_step() for _ in range(S)]) / S

    xb = x[:64]
    W1 = torch.randn(a.d_in, 2048, requires_grad=True)
    W2 = torch.randn(2048, a.d_out, requires_grad=True)

    def gemms():  # encoder and decoder forward, then their backward products (dW_dec, dh, dW_enc)
        h = xb @ W1
        o = h @ W2
        o.backward(torch.ones_like(o))

    t_gemm = timeit(lambda: [gemms() for _ in range(S)]) / S
    # and the AdamW update every one of the 8 models pays each step, whatever the trainer: all their parameters, fused
    adam_p8 = [torch.nn.Parameter(q.detach().repeat(8, *[1] * (q.dim() - 1))) for q in mat.parameters()]
    for q in adam_p8:
        q.grad = torch.randn_like(q)
    aopt = torch.optim.AdamW(adam_p8, lr=1e-4, fused=True)
    t_adam8 = timeit(lambda: [aopt.step() for _ in range(S)]) / S
    print(f"d_in={a.d_in} d_out={a.d_out} d_sae=2048, {torch.get_num_threads()} threads, {S} steps per timing")
    print(f"{'baseline':<46}{'ms/step':>9}   {'compared':<30}{'ms/step':>9}{'speed-up':>10}")
    for base, tb, name, tn in rows:
        per_step = a.group_steps if 'stage groups' in base else 1  # the groups' row: wall time of all, per step
        print(f"{base:<46}{tb / per_step * 1e3:>9.2f}   {name:<30}{tn / per_step * 1e3:>9.2f}{tb / tn:>9.2f}x")
    print(
        f"paper_repo floor (matrix products and fused AdamW only) {t_floor * 1e3:.2f} ms: the reference step is "
        f"{t_ref / t_floor:.2f}x it, "
        f"ours {t_ours / t_floor:.2f}x; an exact step can hardly go below it, so about {t_ref / t_floor:.2f}x is the "
        "most any trainer can gain over the reference on this CPU"
    )
    print(
        f"canonical Matryoshka step {t_mat * 1e3:.2f} ms = {t_mat / t_gemm:.2f}x the time of its GEMMs alone "
        f"({t_gemm * 1e3:.2f} ms: "
        f"encoder and decoder forward, and their gradients)"
    )
    bound = 8 * t_gemm + t_adam8
    print(
        "one-pass bound: stacking shares no arithmetic, so one pass still pays 8x the GEMMs of a step "
        f"({8 * t_gemm * 1e3:.1f} ms) and "
        f"the AdamW update of all 8 models ({t_adam8 * 1e3:.1f} ms), {bound * 1e3:.1f} ms in all; against the "
        "sequential runs' "
        f"{t_seq / S * 1e3:.1f} ms per step of 8 models that caps any exact one-pass trainer at "
        f"{t_seq / (S * bound):.2f}x on this CPU "
        f"(GEMMs alone: {t_seq / (S * 8 * t_gemm):.2f}x; measured: {t_seq / t_one:.2f}x)"
    )
    print(
        f"the stage's groups: {t_groups_one:.1f} s in one process, {t_groups_two:.1f} s in two workers (their start, "
        f"{t_workers_start:.1f} s, paid once per stage, not counted)"
    )
    print(
        f"samples/s: paper_repo (batch 32) {32 / t_ours:,.0f} (reference {32 / t_ref:,.0f}); canonical Matryoshka "
        f"(batch 64) {64 / t_mat:,.0f}; "
        f"8 configs in one pass {8 * n / t_one:,.0f} (sequential {8 * n / t_seq:,.0f})"
    )
