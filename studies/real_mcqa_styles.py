"""MCQA accuracy of SmolLM2-135M-Instruct on the shipped real-world facts, per scoring style.

Whole entity groups are sampled (seeded) until ``--n`` facts; each style scores the same facts
(``completion``: option likelihood as the prompt's continuation; ``chat``: the question in the
chat template, the option as the reply; ``letters``: the paper's instruction template, a letter
among listed options). Greedy exact-match accuracy is given beside them. Chance is 1/3.

Usage:
    OMP_NUM_THREADS=1 python studies/real_mcqa_styles.py --n 90 \
        --out studies/results/real-mcqa-styles.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import neuronscope as ns
from neuronscope.atomic import atomic_write_text
from neuronscope.bench.real import sample_groups
from neuronscope.mcqa import STYLES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = ns.pretrained("smollm2-135m-instruct", device="cpu")
    facts = sample_groups(ns.real_facts(), args.n, seed=args.seed)
    record = {"command": f"OMP_NUM_THREADS=1 python studies/real_mcqa_styles.py --n {args.n} "
                         f"--seed {args.seed}", "n_facts": len(facts), "chance": 1 / 3, "accuracy": {},
              "cpu_seconds": {}}
    start = time.process_time()
    record["accuracy"]["greedy"] = float(ns.accuracy(model, facts))
    record["cpu_seconds"]["greedy"] = time.process_time() - start
    for style in STYLES:
        for normalize in ("sum", "mean"):
            if style == "letters" and normalize == "mean":
                continue  # one token per option: the same numbers
            start = time.process_time()
            key = f"{style}/{normalize}"
            record["accuracy"][key] = float(ns.mcqa_accuracy(model, facts, style=style, normalize=normalize))
            record["cpu_seconds"][key] = time.process_time() - start
    print(json.dumps(record, indent=1))
    if args.out:
        atomic_write_text(args.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
