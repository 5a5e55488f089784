"""The dictionaries on a CUDA GPU, each figure beside its comparison (`--device cpu` runs the same on the CPU):

1. `grads`: the fused training step's loss and gradients on the GPU against autograd's on the GPU, and both against
   autograd in float64 on the CPU from the same state, for every kind at the default run's shapes (h2 1280, h1 256,
   2,048 latents, batch 64): a stack of two Matryoshka transcoders with AuxK, the skip transcoder, the SAE and the
   Matryoshka SAE, each through the sparse and the dense decode, and `paper_repo` with its clipping.
2. `stacking`: 8 configs (an L0 sweep x seeds) trained in one pass against the same 8 one after another, on the GPU
   (on a 2-core CPU stacking cannot pay: `benchmarks/dictionaries.py` prints its bound there); samples/s of the
   canonical model's step.

A whole run's stage times on a GPU come from `mtc reproduce` itself (`device = auto`): each stage notebook's wall time
as it prints it, and the compute seconds in `results.json` -> `timings_s`.

    python benchmarks/gpu.py [--parts grads stacking] [--steps 200]
"""

import argparse, copy, time
import torch
from mtc_nb.dictionaries import DictConfig, paper_repo_config, dictionary_model
from mtc_nb.training import StackLoss, PaperRepoLoss, PAPER_MAX_GRAD_NORM, stack_loss_and_grads, train_dictionaries

D_IN, D_OUT, D_SAE, BATCH = 1280, 256, 2048, 64
LEVELS = (128, 256, 512, 1024, 2048)


def activations(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    "Stand-ins for (h2, h1): a ReLU'd random input and a ReLU'd random linear map of it, on the CPU."
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, D_IN, generator=g) * 0.5 + 0.2).relu()
    y = (x @ torch.randn(D_IN, D_OUT, generator=g) / D_IN**0.5).relu()
    return x, y


def max_rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    "Largest absolute difference over the reference's largest magnitude."
    ref = ref.double().cpu()
    return float((got.double().cpu() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def max_rel_err_all(grads, refs) -> float:
    "The largest `max_rel_err` over pairs of gradients."
    return max(max_rel_err(g, r) for g, r in zip(grads, refs))


def autograd_grads(model, x, y) -> tuple[float, list[torch.Tensor]]:
    "Autograd's loss and gradients of `model.loss` (a deep copy: the model's own state is left as it was)."
    m = copy.deepcopy(model)
    loss = m.loss(x, y)[0]
    loss.backward()
    return float(loss), [p.grad for p in m.parameters()]


def check_stack(name: str, cfgs: list[DictConfig], x_cpu, y_cpu, dead: range, device: str) -> list[tuple]:
    """Rows (model, check, loss error, largest gradient error) of one stack: the fused step on `device` (sparse and
    dense decode) against autograd on `device`, and both against autograd in float64 on the CPU, from one state."""
    base = dictionary_model(cfgs)
    base.init_from_data(x_cpu, y_cpu)
    base.train()
    base.since_fired[:, list(dead)] = 100  # these latents count as dead: AuxK takes part
    ref = copy.deepcopy(base).double()
    ref_loss, ref_grads = autograd_grads(ref, x_cpu.double(), y_cpu.double())
    x, y = x_cpu.to(device), y_cpu.to(device)
    gpu = copy.deepcopy(base).to(device)
    auto_loss, auto_grads = autograd_grads(gpu, x, y)
    rows = [(name, 'autograd', abs(auto_loss - ref_loss) / abs(ref_loss), max_rel_err_all(auto_grads, ref_grads))]
    for sparse in (True, False):
        fused = copy.deepcopy(gpu)
        loss, _, _, grads, _ = stack_loss_and_grads(fused, x, y, sparse=sparse)
        decode = 'sparse' if sparse else 'dense'
        for what, ref_l, ref_g in (('autograd', auto_loss, auto_grads), ('float64', ref_loss, ref_grads)):
            err = max_rel_err_all(grads, ref_g)
            rows.append((name, f'fused, {decode} vs {what}', abs(float(loss) - ref_l) / abs(ref_l), err))
    through = copy.deepcopy(gpu)  # the Function as training calls it
    loss = StackLoss.apply(through, x, y, None, *through.parameters())[0]
    loss.backward()
    grads = [p.grad for p in through.parameters()]
    err = max_rel_err_all(grads, ref_grads)
    rows.append((name, 'StackLoss vs float64', abs(float(loss) - ref_loss) / abs(ref_loss), err))
    return rows


def check_paper_repo(x_cpu, y_cpu, device: str) -> list[tuple]:
    "paper_repo's fused, clipped gradient on `device` against autograd + clip_grad_norm_ in float64 on the CPU."
    c = paper_repo_config(D_IN, D_OUT, levels=LEVELS)
    base = dictionary_model([c])
    base.init_from_data(x_cpu, y_cpu)
    ref = copy.deepcopy(base).double()
    loss_ref = ref.loss(x_cpu.double(), y_cpu.double())[0]
    loss_ref.backward()
    torch.nn.utils.clip_grad_norm_(ref.parameters(), PAPER_MAX_GRAD_NORM)
    gpu = copy.deepcopy(base).to(device)
    x, y = x_cpu.to(device), y_cpu.to(device)
    loss = PaperRepoLoss.apply(gpu, x, y, PAPER_MAX_GRAD_NORM, None, *gpu.parameters())[0]
    loss.backward()
    err = max_rel_err_all([p.grad for p in gpu.parameters()], [p.grad for p in ref.parameters()])
    loss_err = abs(float(loss) - float(loss_ref)) / float(loss_ref)
    return [('paper_repo', 'PaperRepoLoss (clipped) vs float64', loss_err, err)]


def grads_part(device: str) -> bool:
    x, y = activations(BATCH)
    base = dict(d_in=D_IN, d_out=D_OUT, d_sae=D_SAE, levels=LEVELS)
    sae = dict(base, d_out=D_IN)
    rows = []
    two = [DictConfig(**base, k=100, seed=0), DictConfig(**base, k=32, seed=1)]
    rows += check_stack('Matryoshka transcoder x2, AuxK', two, x, y, range(300, 900), device)
    skip = DictConfig(**dict(base, kind='skip_transcoder', levels=(D_SAE,)), k=100)
    rows += check_stack('skip transcoder, AuxK', [skip], x, y, range(100, 400), device)
    for kind, levels in (('sae', (D_SAE,)), ('matryoshka_sae', LEVELS)):
        c = DictConfig(**dict(sae, kind=kind, levels=levels), k=32)
        rows += check_stack(f'{kind}, AuxK', [c], x, x, range(0, 1500), device)
    rows += check_paper_repo(x, y, device)
    # float32 on either device against float64: the products' rounding, about sqrt(d_in) * 2^-24 relative per entry,
    # grown by the sums that make a gradient; 1e-4 of the largest entry is far above it and far below a wrong formula
    tol = 1e-4
    print(f"\n1. fused gradients on {device_name(device)} (relative to the reference's largest entry)")
    print(f"{'model':<34}{'check':<34}{'loss err':>10}{'grad err':>10}  ok (tolerance {tol:g})")
    ok = True
    for name, check, loss_err, grad_err in rows:
        good = loss_err <= tol and grad_err <= tol
        ok &= good
        print(f"{name:<34}{check:<34}{loss_err:>10.1e}{grad_err:>10.1e}  {'yes' if good else 'NO'}")
    return ok


def device_name(device: str) -> str:
    return (
        torch.cuda.get_device_name(device)
        if device.startswith('cuda')
        else f'the CPU ({torch.get_num_threads()} threads)'
    )


def synchronize(device: str) -> None:
    "Wait for the device's queued work (a CUDA device runs asynchronously)."
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)


def timed_training(cfgs, x, y, xv, yv, device) -> float:
    "Wall seconds of `train_dictionaries` on `device`: initialisation, every step and the validation pass."
    synchronize(device)
    t0 = time.perf_counter()
    train_dictionaries(cfgs, x, y, xv, yv, progress=False, device=device)
    synchronize(device)
    return time.perf_counter() - t0


def stacking_part(device: str, steps: int) -> None:
    x, y = activations(BATCH * steps + 1024, seed=1)
    xv, yv = x[-1024:], y[-1024:]
    x, y = x[:-1024], y[:-1024]
    cfgs = [
        DictConfig(d_in=D_IN, d_out=D_OUT, levels=LEVELS, k=k, seed=s, epochs=1, batch_size=BATCH)
        for k in (16, 32, 64, 124)
        for s in (0, 1)
    ]
    timed_training(cfgs[:1], x[: BATCH * 20], y[: BATCH * 20], xv, yv, device)  # warm-up: kernels, allocator
    t_one = timed_training(cfgs, x, y, xv, yv, device)
    t_seq = sum(timed_training([c], x, y, xv, yv, device) for c in cfgs)
    t_single = timed_training(cfgs[4:5], x, y, xv, yv, device)
    print(f"\n2. stacking on {device_name(device)} ({steps} steps of batch {BATCH} per config)")
    print(f"8 configs one after another {t_seq:.2f} s, in one pass {t_one:.2f} s: {t_seq / t_one:.2f}x")
    print(
        f"samples/s: canonical Matryoshka transcoder (k = 64) alone {BATCH * steps / t_single:,.0f}; "
        f"8 configs in one pass {8 * BATCH * steps / t_one:,.0f}"
    )


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--parts', nargs='+', default=['grads', 'stacking'], choices=['grads', 'stacking'])
    ap.add_argument('--steps', type=int, default=200, help="training steps per config in the stacking comparison")
    ap.add_argument('--device', default='cuda')
    a = ap.parse_args()
    if a.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device here: this script measures the GPU path (--device cpu: the CPU's)")
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {device_name(a.device)}")
    ok = grads_part(a.device) if 'grads' in a.parts else True
    if 'stacking' in a.parts:
        stacking_part(a.device, a.steps)
    raise SystemExit(0 if ok else 1)
