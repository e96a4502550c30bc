"""Benchmark of the BatchTopK SAE training step, inference encoding and encoding memory.

Prints, measured in one process on CPU (d = 384, F = 3072, k = 50, batch 2500):

- the time of one full training step (``BatchTopKTrainer.update``: selection, sparse
  decode, loss, backward, gradient projection, clipping, Adam, renormalisation) divided
  by the time of the dense encoder matmul forward + backward alone (target <= 2.0);
- the same for a dense reference step written as in dictionary_learning (flat topk,
  scatter into a dense B x F matrix, dense decoder, autograd) as the peer;
- frames/s of inference encoding to a sparse matrix (``encode_sparse``);
- in a child process, the peak memory of encoding a 1-hour stimulus (180 000 frames at
  50 Hz) with F = 6144 (target < 2 GB).

Run: ``OMP_NUM_THREADS=1 python benchmarks/sae_train.py [--threads N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import torch

from sae_eeg.sae import BatchTopKSAE, BatchTopKTrainer

D, F, K, B = 384, 3072, 50, 2500


def _timeit(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _dense_matmul(x_BD, repeats):
    W_FD = torch.randn(F, D, generator=torch.Generator().manual_seed(1)).div_(D**0.5).requires_grad_(True)
    grad_BF = torch.randn(B, F, generator=torch.Generator().manual_seed(2))

    def run():
        pre_BF = x_BD @ W_FD.T
        pre_BF.backward(grad_BF)
        W_FD.grad = None

    return _timeit(run, repeats)


def _dense_reference_step(x_BD, repeats):
    """A BatchTopK step as dictionary_learning writes it (dense B x F everywhere)."""
    sae = BatchTopKSAE(D, F, K, random_state=0)
    opt = torch.optim.Adam(sae.parameters(), lr=2e-4)

    def run():
        h_BF = torch.relu(sae.encoder(x_BD - sae.b_dec))
        top = h_BF.flatten().topk(K * B, sorted=False)
        z_BF = torch.zeros_like(h_BF.flatten()).scatter(0, top.indices, top.values).view_as(h_BF)
        loss = (x_BD - (sae.decoder(z_BF) + sae.b_dec)).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()

    return _timeit(run, repeats)


def _project_step(x_BD, repeats):
    sae = BatchTopKSAE(D, F, K, random_state=0)
    trainer = BatchTopKTrainer(sae, n_steps=10_000, threshold_start=0)
    return _timeit(lambda: trainer.update(x_BD), repeats)


def _encode_rate(x_BD):
    sae = BatchTopKSAE(D, F, K, random_state=0).eval()
    sae.threshold.fill_(_threshold_for_l0(sae, x_BD[:500], K))
    frames = torch.cat([x_BD] * 8)
    seconds = _timeit(lambda: sae.encode_sparse(frames), 2)
    codes = sae.encode_sparse(frames)
    return frames.shape[0] / seconds, codes.nnz / frames.shape[0]


@torch.no_grad()
def _threshold_for_l0(sae, x_BD, l0):
    h_BF = sae.pre_activations(x_BD - 0)
    return float(h_BF.flatten().topk(l0 * x_BD.shape[0]).values.min())


def _memory_child():
    """Encode a 1-hour stimulus at F = 6144; print peak memory as JSON."""
    torch.set_num_threads(1)
    n_frames, n_features = 180_000, 6144
    rng = np.random.default_rng(0)
    acts_TD = rng.standard_normal((n_frames, D), dtype=np.float32)
    sae = BatchTopKSAE(D, n_features, K, random_state=0).eval()
    sae.threshold.fill_(_threshold_for_l0(sae, torch.from_numpy(acts_TD[:500]), K))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    start = time.perf_counter()
    codes = sae.encode_sparse(acts_TD)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "peak_rss_mb": peak_rss, "rss_before_encoding_mb": base_rss, "tracemalloc_peak_mb": traced_peak / 2**20,
        "result_mb": (codes.data.nbytes + codes.indices.nbytes + codes.indptr.nbytes) / 2**20,
        "dense_would_be_mb": n_frames * n_features * 4 / 2**20, "l0": codes.nnz / n_frames, "seconds": seconds,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        _memory_child()
        return
    torch.set_num_threads(args.threads)
    x_BD = torch.randn(B, D, generator=torch.Generator().manual_seed(0))
    dense = _dense_matmul(x_BD, args.repeats)
    project = _project_step(x_BD, args.repeats)
    reference = _dense_reference_step(x_BD, args.repeats)
    print(f"d={D} F={F} k={K} batch={B} threads={args.threads}")
    print(f"dense encoder matmul fwd+bwd        : {dense * 1e3:8.1f} ms")
    print(f"sae_eeg training step               : {project * 1e3:8.1f} ms")
    print(f"dense reference step (dictionary_learning style): {reference * 1e3:8.1f} ms")
    print(f"ratio step / dense matmul fwd+bwd   : {project / dense:8.2f}  (target <= 2.0)")
    print(f"ratio dense reference / sae_eeg step: {reference / project:8.2f}")
    rate, l0 = _encode_rate(x_BD)
    print(f"inference encode_sparse             : {rate:8.0f} frames/s (L0 {l0:.1f}, F={F})")
    child = subprocess.run([sys.executable, __file__, "--memory-child"], capture_output=True, text=True, check=True)
    mem = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"1-hour stimulus (180000 frames) at F=6144: peak RSS {mem['peak_rss_mb']:.0f} MB "
          f"(before encoding {mem['rss_before_encoding_mb']:.0f} MB; tracemalloc peak {mem['tracemalloc_peak_mb']:.0f} MB;"
          f" result {mem['result_mb']:.0f} MB; dense would be {mem['dense_would_be_mb']:.0f} MB; "
          f"L0 {mem['l0']:.1f}; {mem['seconds']:.1f} s) target < 2048 MB")


if __name__ == "__main__":
    main()
