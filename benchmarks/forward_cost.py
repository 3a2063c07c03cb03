"""What one forward pass of the bundled model costs against the tokens it runs (and the dtype):
the figure behind the streaming engine's design. Rows x new tokens per pass, on top of a cached
prefix of `--context` tokens, median of `--repeats` passes each, fp32 and bf16 side by side.

    PYTHONPATH=src python benchmarks/forward_cost.py [--context 300] [--repeats 5]
"""

import argparse
import statistics
import time

import torch
from transformers import DynamicCache

from seqpo.model import load_model


def cost(model, rows: int, width: int, context: int, repeats: int) -> float:
    ids = torch.randint(1000, 20000, (rows, context))
    times = []
    for _ in range(repeats):
        cache = DynamicCache()
        with torch.inference_mode():
            model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
            new = torch.randint(1000, 20000, (rows, width))
            t0 = time.perf_counter()
            model(input_ids=new, cache=cache, use_cache=True, logits_to_keep=1)
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--context", type=int, default=300, help="cached tokens before the pass")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shapes", default="1x1,1x8,1x32,1x64,4x1,4x16,4x64", help="rows x tokens per pass")
    args = ap.parse_args()
    shapes = [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")]
    models = {d: load_model(dtype=d).model for d in ("float32", "bfloat16")}
    print("| rows x new tokens | fp32 ms / pass | bf16 ms / pass | fp32 / bf16 |")
    print("|---|---|---|---|")
    for rows, width in shapes:
        ms = {d: cost(m, rows, width, args.context, args.repeats) for d, m in models.items()}
        print(f"| {rows} x {width} | {ms['float32']:.0f} | {ms['bfloat16']:.0f} | {ms['float32'] / ms['bfloat16']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
