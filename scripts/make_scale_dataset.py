"""Generate the MM-IMDB-sized synthetic dataset (26,000 × 4,446 by default) and, with --model, a model for it.

    python scripts/make_scale_dataset.py build/scale/mmimdb_like.h5 [--samples N] [--dims image=4096,text=300,meta=50]
                                         [--model build/scale/mmimdb_like.model.pt] [--epochs 3]

`deqstudio bench --scale` calls the same functions (and makes the files when they are missing).
"""

from __future__ import annotations

import argparse
import time

from deqstudio.workflows.scale_data import DEFAULT_DIMS, DEFAULT_SAMPLES, make_scale_dataset


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    ap.add_argument("--dims", default=",".join(f"{k}={v}" for k, v in DEFAULT_DIMS.items()))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (p.split("=") for p in args.dims.split(","))}
    t0 = time.perf_counter()
    path = make_scale_dataset(args.out, samples=args.samples, dims=dims, seed=args.seed)
    print(f"{path}: {args.samples} samples, {sum(dims.values())} features, {path.stat().st_size / 1e6:.0f} MB "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
