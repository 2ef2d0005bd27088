"""Speed of the real-model path on SmolLM2-135M-Instruct: neuronscope vs the bare HF model.

Two ratios, measured side by side in one run (process CPU time, one thread, the variants
interleaved and repeated; the ratio of medians is reported):

1. one unlearning step of ``ns.unlearn(method="gd")`` (from ``TrainHistory.step_seconds``,
   evaluation excluded) vs a bare Hugging Face training step of the same loss on the same rows
   (one forward of the stacked forget and retain rows, -NLL(forget) + NLL(retain), backward,
   gradient clipping, AdamW) -- target <= 1.3x;
2. a forward and backward pass (answer NLL) through the TransformerBridge vs the bare HF
   model, same rows -- target <= 1.1x (a regression check).

The HF model is loaded from the same converted folder as the bridge, so the weights match.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_real.py --repeats 5 --out benchmarks/results/real-speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

import neuronscope as ns
from neuronscope.atomic import atomic_write_text
from neuronscope.gguf import cached_conversion
from neuronscope.pretrained import pretrained_file
from neuronscope.scoring import answer_token_logprobs, batch_for
from neuronscope.unlearning import unlearn


def _nll(logits: torch.Tensor, batch: ns.FactBatch) -> torch.Tensor:
    picked, mask = answer_token_logprobs(logits, batch)
    return -(picked.sum() / mask.sum())


def _forward_backward(model, tokens: torch.Tensor, batch: ns.FactBatch, hf: bool) -> float:
    start = time.process_time()
    logits = model(tokens).logits if hf else model(tokens)
    _nll(logits, batch).backward()
    seconds = time.process_time() - start
    model.zero_grad(set_to_none=True)
    return seconds


def _hf_gd_steps(hf, forget: ns.FactBatch, retain: ns.FactBatch, steps: int, lr: float) -> list[float]:
    """Bare HF: the GD step on the stacked forget + retain rows (the same rows every step)."""
    width = max(forget.tokens.shape[1], retain.tokens.shape[1])

    def pad(b: ns.FactBatch) -> ns.FactBatch:
        extra = width - b.tokens.shape[1]
        return ns.FactBatch(*(torch.nn.functional.pad(t, (0, extra)) for t in
                              (b.tokens, b.attention_mask, b.prompt_mask, b.answer_mask)))

    f, r = pad(forget), pad(retain)
    both = ns.FactBatch(*(torch.cat([a, b]) for a, b in zip(
        (f.tokens, f.attention_mask, f.prompt_mask, f.answer_mask),
        (r.tokens, r.attention_mask, r.prompt_mask, r.answer_mask), strict=True)))
    n = len(forget)
    optimizer = torch.optim.AdamW(hf.parameters(), lr=lr)
    times = []
    for _ in range(steps):
        start = time.process_time()
        optimizer.zero_grad(set_to_none=True)
        picked, mask = answer_token_logprobs(hf(both.tokens).logits, both)
        forget_term = picked[:n].sum() / mask[:n].sum()          # ascent on the forget NLL
        retain_term = -(picked[n:].sum() / mask[n:].sum())        # NLL of the retain rows
        (forget_term + retain_term).backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        optimizer.step()
        times.append(time.process_time() - start)
    optimizer.zero_grad(set_to_none=True)
    return times


def run(args: argparse.Namespace) -> dict:
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    bridge = ns.pretrained("smollm2-135m-instruct", device="cpu")
    folder = cached_conversion(pretrained_file("smollm2-135m-instruct"))
    hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    hf.eval()
    facts = ns.real_facts(args.facts)
    forget, retain = facts[: args.rows], facts[args.rows : 2 * args.rows]
    fb, rb = batch_for(bridge, forget), batch_for(bridge, retain)
    times: dict[str, list[float]] = {"fb_bridge": [], "fb_hf": [], "step_ns": [], "step_hf": []}
    for _ in range(args.repeats):
        for _ in range(args.passes):
            times["fb_bridge"].append(_forward_backward(bridge, fb.tokens, fb, hf=False))
            times["fb_hf"].append(_forward_backward(hf, fb.tokens, fb, hf=True))
        result = unlearn(bridge, forget, retain, method="gd", max_steps=args.steps, lr=1e-5,
                         batch_size=args.rows, retain_batch_size=args.rows, eval_every=10_000,
                         target_forget_accuracy=None, progress=False)
        times["step_ns"].extend(result.history.step_seconds(cpu=True)[args.skip :])
        del result
        times["step_hf"].extend(_hf_gd_steps(hf, fb, rb, args.steps, 1e-5)[args.skip :])
    median = {k: statistics.median(v) for k, v in times.items()}
    record = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/bench_real.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out", "facts")),
        "model": "SmolLM2-135M-Instruct (dequantised Q4_1, float32)",
        "rows": args.rows, "tokens_per_row_max": int(fb.tokens.shape[1]),
        "clock": "process CPU time, 1 thread", "torch": torch.__version__,
        "median_seconds": median,
        "ratio_forward_backward": median["fb_bridge"] / median["fb_hf"],
        "ratio_unlearning_step": median["step_ns"] / median["step_hf"],
        "targets": {"ratio_forward_backward": 1.1, "ratio_unlearning_step": 1.3},
        "samples": times,
    }
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16, help="forget rows (and as many retain rows)")
    parser.add_argument("--steps", type=int, default=4, help="unlearning steps per repeat")
    parser.add_argument("--skip", type=int, default=1, help="warm-up steps dropped per repeat")
    parser.add_argument("--passes", type=int, default=3, help="forward+backward pairs per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--facts", default=None, help="a facts JSONL (default: the shipped facts)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    record = run(args)
    summary = {k: record[k] for k in ("median_seconds", "ratio_forward_backward", "ratio_unlearning_step")}
    print(json.dumps(summary, indent=1))
    if args.out:
        atomic_write_text(args.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
