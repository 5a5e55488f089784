"""Would a sparse decode speed up an SAE's training step? The three large products of one fused step, dense (as
`stack_loss_and_grads` computes them) beside their sparse forms (CSR matrix products; a gather for the latent
gradient at the active entries only), on random weights of the default run's shapes.

An SAE's target is as wide as its input (1,280 here against a transcoder's 256), so its decoder products cost as much
as its encoder's; sparsify decodes only the k active latents. Printed: milliseconds per call, best of `--repeats`.

    python benchmarks/sparse_decode.py [--batch 64] [--d-sae 2048] [--d-out 1280] [--k 100] [--threads 1]
"""

import argparse, time, warnings

import torch


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--d-sae', type=int, default=2048)
    ap.add_argument('--d-out', type=int, default=1280)
    ap.add_argument('--k', type=int, default=100, help='active latents per sample')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--repeats', type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings('ignore', message='Sparse CSR tensor support is in beta')
    gen = torch.Generator().manual_seed(0)
    W_dec = torch.randn(args.d_sae, args.d_out, generator=gen)
    grad_out = torch.randn(args.batch, args.d_out, generator=gen)
    active = torch.rand(args.batch, args.d_sae, generator=gen).topk(args.k, dim=1).indices
    f = torch.zeros(args.batch, args.d_sae).scatter_(1, active, torch.rand(args.batch, args.k, generator=gen))
    rows, cols = f.nonzero(as_tuple=True)

    def csr_decode():
        return f.to_sparse_csr() @ W_dec

    def csr_decoder_grad():
        return f.T.contiguous().to_sparse_csr() @ grad_out

    def gathered_latent_grad():
        return (grad_out[rows] * W_dec[cols]).sum(-1)

    products = {
        'decode f W_dec': (lambda: f @ W_dec, csr_decode),
        'decoder gradient fᵀ dŷ': (lambda: f.T @ grad_out, csr_decoder_grad),
        'latent gradient dŷ W_decᵀ': (lambda: grad_out @ W_dec.T, gathered_latent_grad),
    }
    print(
        f"batch {args.batch}, {args.d_sae} latents, {args.d_out}-wide target, {args.k} active per sample, "
        f"{args.threads} thread(s), torch {torch.__version__}; ms per call, best of {args.repeats}"
    )
    print(f"{'product':30s} {'dense':>8s} {'sparse':>8s}")
    for name, (dense, sparse) in products.items():
        print(f"{name:30s} {best_ms(dense, args.repeats):8.2f} {best_ms(sparse, args.repeats):8.2f}")


if __name__ == '__main__':
    main()
