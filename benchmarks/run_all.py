"""`make bench`: every CPU benchmark, one after another, each in its own process.

Each benchmark prints its own table; run one alone with ``python -m benchmarks.bench_<name>``.
Separate processes keep one benchmark's threads, caches and imports from skewing the next.
``benchmarks.gpu_check`` is left out: it needs a CUDA device (run it there by hand).
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ("bench_tabletop", "bench_data", "bench_metaworld", "bench_flops", "bench_fit",
              "bench_attention", "bench_train", "bench_gemm", "bench_compile", "bench_forkserver", "bench_sweep",
              "bench_ensemble")


def main() -> int:
    """Run every benchmark; exit 1 if any failed, after running the rest."""
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== benchmarks.{name} ===", flush=True)
        if subprocess.call([sys.executable, "-m", f"benchmarks.{name}"]) != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
