"""What a real model knows of the shipped real-world facts, per relation.

Three readings per fact, on one thread: greedy exact match of the answer after the completion
prompt and after the paraphrase (``ns.accuracy``), and 3-option choice by the highest summed
answer log-probability after the completion prompt (answer vs its two distractors; a plain
likelihood reading, not the instruction-template MCQA of the paper). Writes JSON with the numbers
per relation and the ids of the facts right on all three.

    OMP_NUM_THREADS=1 python studies/real_facts_accuracy.py --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch

import neuronscope as ns
from neuronscope.atomic import atomic_write_text

DATA = Path(__file__).resolve().parent.parent / "neuronscope" / "data" / "real_facts.jsonl"
OUT = Path(__file__).resolve().parent / "results" / "real-facts-accuracy-smollm2.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="an ns.pretrained name or a Hugging Face folder")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    start = time.process_time()
    model = (ns.load_model(args.model) if Path(args.model).is_dir()
             else ns.pretrained(args.model, device="cpu"))
    facts = ns.FactSet.from_jsonl(DATA)
    paraphrased = ns.FactSet(dataclasses.replace(f, prompt=f.meta["paraphrase"]) for f in facts)
    greedy = ns.accuracy(model, facts, per_fact=True, batch_size=args.batch_size)
    greedy_para = ns.accuracy(model, paraphrased, per_fact=True, batch_size=args.batch_size)
    options = [ns.answer_logprob(model, facts, batch_size=args.batch_size)]
    for k in range(2):
        wrong = ns.FactSet(dataclasses.replace(f, answer=f.meta["distractors"][k], id=None)
                           for f in facts)
        options.append(ns.answer_logprob(model, wrong, batch_size=args.batch_size))
    choice = torch.stack(options, dim=1).argmax(dim=1) == 0

    rows: dict[str, dict[str, float]] = {}
    by_relation: dict[str, list[int]] = defaultdict(list)
    for index, fact in enumerate(facts):
        by_relation[fact.relation].append(index)
    for relation, indices in [*by_relation.items(), ("all", list(range(len(facts))))]:
        idx = torch.tensor(indices)
        rows[relation] = {
            "facts": len(indices),
            "greedy": round(float(greedy[idx].float().mean()), 3),
            "greedy_paraphrase": round(float(greedy_para[idx].float().mean()), 3),
            "choice_by_logprob": round(float(choice[idx].float().mean()), 3),
        }
    known = [f.id for f, g, c in zip(facts, greedy.tolist(), choice.tolist(), strict=True) if g and c]
    result = {"model": args.model, "facts_file": "neuronscope/data/real_facts.jsonl",
              "per_relation": rows, "greedy_and_choice_right": known,
              "cpu_seconds": round(time.process_time() - start, 1)}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"{'relation':18} {'facts':>5} {'greedy':>7} {'para':>7} {'choice':>7}")
    for relation, row in rows.items():
        print(f"{relation:18} {row['facts']:5d} {row['greedy']:7.3f} {row['greedy_paraphrase']:7.3f} "
              f"{row['choice_by_logprob']:7.3f}")
    print(f"right by greedy and by choice: {len(known)}; wrote {args.out}")


if __name__ == "__main__":
    main()
