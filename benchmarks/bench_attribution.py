"""Benchmark: neuronscope's attribution engine against captum, the slow reference loop and
the bare forward/backward passes integrated gradients cannot avoid.

Side by side in one process, on (a) the default organism (``size="small"``) with 200 facts and
(b) a 12-layer GPT-2-small-shaped random model (d_model 768, d_mlp 3072, vocabulary 50,257)
on 32 facts. Prints wall times, ratios, largest absolute differences and peak memory, and
writes them as JSON with ``--json``.

    OMP_NUM_THREADS=1 python benchmarks/bench_attribution.py            # the full run
    OMP_NUM_THREADS=1 python benchmarks/bench_attribution.py --quick    # a short look

On a machine shared with other jobs wall times swing by 2x from minute to minute; the default
compares this process's CPU time with one thread (``--wall`` for wall time, ``--threads N``),
methods run round-robin and each method's fastest round counts.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import neuronscope as ns
from neuronscope.attribution import attribute
from neuronscope.attribution.engine import Capture, EngineOptions, Readout, expand_rows, unembed_rows
from neuronscope.attribution.spec import position_mask
from neuronscope.hooks import mlp_hook_name, n_layers
from neuronscope.scoring import batch_for

# --- measuring -------------------------------------------------------------------------


class PeakRSS:
    """Peak resident memory above the level at entry (sampled every 2 ms)."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.page

    def __enter__(self) -> PeakRSS:
        _release_memory()
        self.start = self._rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def _release_memory() -> None:
    """Hand freed heap back to the OS so each measurement starts from the same floor."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(name: str, fn: Callable[[], Any], log: dict) -> Any:
    """Run ``fn`` once; append its wall time and peak memory to ``log[name]``."""
    with PeakRSS() as mem:
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    entry = log.setdefault(name, {"seconds": [], "cpu_seconds": [], "peak_mib": []})
    entry["seconds"].append(seconds)
    entry["cpu_seconds"].append(cpu_seconds)
    entry["peak_mib"].append(mem.mib)
    print(f"  {name:<40} {seconds:9.2f} s wall {cpu_seconds:9.2f} s cpu   peak +{mem.mib:8.1f} MiB",
          flush=True)
    return result


# --- the competitors -------------------------------------------------------------------


def captum_per_layer(model: Any, facts: Any, layers: list[int], steps: int, method: str,
                     internal_batch_size: int | None, target: str = "prob") -> torch.Tensor:
    """captum's IntegratedGradients on one layer's hook_post at a time: a forward function
    that replaces that layer's activations; facts batched; baseline zero at the prompt
    positions and equal to the activation elsewhere (so only prompt positions move)."""
    from captum.attr import IntegratedGradients

    batch = batch_for(model, facts)
    tokens = batch.tokens
    mask = position_mask(batch, "prompt")
    readout = Readout.of(batch, tokens.shape[1] - 1)
    scores = torch.zeros(len(batch), len(layers), model.cfg.d_mlp)
    for li, layer in enumerate(layers):
        name = mlp_hook_name(layer)
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=[name])
        h = cache[name]
        baseline = h * (~mask)[..., None]

        def forward(x: torch.Tensor, toks: torch.Tensor, name: str = name) -> torch.Tensor:
            with model.hooks(fwd_hooks=[(name, lambda act, hook: x)]):
                logits = model(toks)  # the model's own forward: full logits everywhere
            # captum stacks the steps alpha-major: row s * n_facts + f is fact f
            copies = toks.shape[0] // len(batch)
            offsets = (torch.arange(copies) * len(batch))[:, None]
            rows = (offsets + readout.rows[None]).flatten()
            pos = readout.pos.repeat(copies)
            token = readout.token.repeat(copies)
            picked = logits[rows, pos].float().log_softmax(-1).gather(-1, token[:, None]).squeeze(-1)
            logp = torch.zeros(toks.shape[0]).index_add(0, rows, picked)
            return logp.exp() if target == "prob" else logp

        ig = IntegratedGradients(forward)
        attr = ig.attribute(h, baselines=baseline, additional_forward_args=(tokens,), n_steps=steps,
                            method=method, internal_batch_size=internal_batch_size)
        scores[:, li] = attr.sum(1).detach()
    return scores


def bare_passes(model: Any, facts: Any, layers: list[int], steps: int,
                target: str = "prob") -> tuple[float, float]:
    """The forward and backward passes exact integrated gradients cannot avoid: for each
    layer, all steps of all facts, from the layer's MLP output projection upward, logits
    only at the positions that predict an answer token, facts grouped by exact length (no
    padding). The one no-grad pass that provides the cached activations is not timed."""
    batch = batch_for(model, facts)
    lengths = batch.lengths
    groups = [torch.nonzero(lengths == n).flatten() for n in lengths.unique()]
    prepared = []
    for rows in groups:
        sub = batch[rows]
        width = sub.tokens.shape[1] - 1
        capture = Capture(model, sub.tokens[:, :width], min(layers), layers)
        prepared.append((sub, capture, Readout.of(sub, width).repeat(steps), len(rows)))
    start, cpu = time.perf_counter(), time.process_time()
    for layer in layers:
        out = model.blocks[layer].mlp._modules["out"]
        for _sub, capture, readout, n in prepared:
            h = expand_rows(capture.acts[layer], n, steps).clone().requires_grad_(True)
            with torch.no_grad():
                base = capture.outputs[layer] - out(capture.acts[layer])
            hidden = expand_rows(base, n, steps) + out(h)
            if layer + 1 < n_layers(model):
                hidden = capture.run_from(model, layer + 1, hidden, steps)
            value = readout.logprob(unembed_rows(model, hidden, readout))
            value = value.exp() if target == "prob" else value
            torch.autograd.grad(value.sum(), h)
    return time.perf_counter() - start, time.process_time() - cpu


# --- the models ------------------------------------------------------------------------


def gpt2_shaped(world: Any, seed: int = 0) -> Any:
    """A random GPT-2-small-shaped model (12 x 768, d_mlp 3072, vocab 50257) with a word-level
    tokenizer over the world's words (ids far below 50257; the logits are full-size)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = world.tokenizer.vocab[3:]
    vocab = {"<|endoftext|>": 0, **{w: i + 1 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=12, n_embd=768, n_head=12, n_inner=3072, vocab_size=50257,
                        n_positions=1024)
    hf_model = GPT2LMHeadModel(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        model = ns.load_model(folder, hf_model=hf_model, device="cpu")
    model.eval()
    return model


# --- one case --------------------------------------------------------------------------


def run_case(label: str, model: Any, facts: Any, *, steps: int, ref_facts: int,
             captum_ibs: list[int | None],
             ablations: list[str], rounds: int, target: str, cpu_clock: bool = True) -> dict:
    """Every method once per round, round-robin (so that a burst of load from other
    processes hits all of them alike); the figures use each method's fastest round."""
    layers = list(range(n_layers(model)))
    print(f"\n== {label}: {len(facts)} facts, {len(layers)} layers, d_mlp {model.cfg.d_mlp}, "
          f"vocab {model.cfg.d_vocab}, {steps} Gauss-Legendre steps, target {target} ==", flush=True)
    attribute(model, facts[:2], steps=2, progress=False)  # warm-up

    def engine(options: EngineOptions | None = None) -> Any:
        return attribute(model, facts, steps=steps, target=target, progress=False, _options=options)

    variants = {
        "without the MLP shortcut": EngineOptions(mlp_shortcut=False),
        "without residual caching": EngineOptions(cache_residual=False),
        "with full logits": EngineOptions(answer_logits_only=False),
        "with padding (no sort, no trim)": EngineOptions(trim_padding=False),
        "all savings off": EngineOptions(cache_residual=False, answer_logits_only=False, trim_padding=False),
    }
    methods: list[tuple[str, Callable[[], Any]]] = [
        ("neuronscope engine", engine),
    ] + [
        (_captum_name(ibs),
         lambda ibs=ibs: captum_per_layer(model, facts, layers, steps, "gausslegendre", ibs, target))
        for ibs in captum_ibs
    ] + [
        ("bare passes (lower bound)", lambda: bare_passes(model, facts, layers, steps, target)),
    ] + [(f"engine {name}", lambda o=variants[name]: engine(o)) for name in ablations]
    log: dict = {}
    results: dict = {}
    bare_times = []
    for round_ in range(rounds):
        print(f" round {round_ + 1}/{rounds}", flush=True)
        for name, fn in methods:
            results[name] = measure(name, fn, log)
            if name.startswith("bare"):
                bare_times.append(results[name])
    sub = facts[:ref_facts]
    ref = measure(f"reference loop ({len(sub)} facts)",
                  lambda: attribute(model, sub, steps=steps, target=target, progress=False,
                                    engine="reference"), log)
    fast = results["neuronscope engine"]
    clock = "cpu_seconds" if cpu_clock else "seconds"
    best = {name: min(entry[clock]) for name, entry in log.items()}
    # captum as fast as it goes: its fastest internal_batch_size
    captum_name = min((_captum_name(ibs) for ibs in captum_ibs), key=best.__getitem__)
    engine_s = best["neuronscope engine"]
    ref_per_fact = best[f"reference loop ({len(sub)} facts)"] / len(sub)
    bare_s = min(t[1] if cpu_clock else t[0] for t in bare_times)
    summary = {
        "target": target, "facts": len(facts), "layers": len(layers), "steps": steps, "rounds": rounds,
        "clock": clock, "mode": fast.meta.get("mode"), "chunks": fast.meta.get("chunks"),
        "engine_s": engine_s,
        "captum_s": best[captum_name],
        "captum_fastest": captum_name,
        "captum_s_by_internal_batch_size": {name: best[name] for name in map(_captum_name, captum_ibs)},
        "reference_s_per_fact": ref_per_fact,
        "bare_s": bare_s,
        "speedup_vs_captum": best[captum_name] / engine_s,
        "speedup_vs_reference": ref_per_fact * len(facts) / engine_s,
        "engine_over_bare": engine_s / bare_s,
        "peak_mib": {name: max(entry["peak_mib"]) for name, entry in log.items()},
        "max_abs_diff_vs_captum": float((fast.scores - results[captum_name])
                                        .abs().max()),
        "max_abs_diff_vs_reference": float((fast.scores[: len(sub)] - ref.scores).abs().max()),
        "max_abs_score": float(fast.scores.abs().max()),
        "max_abs_convergence_delta": float(fast.convergence_delta.abs().max()),
        "max_relative_convergence_delta": float((fast.convergence_delta.abs() / (
            fast.target_input[:, None] - fast.target_baseline).abs().clamp_min(1e-12)).max()),
        "ablation_slowdown": {name: best[f"engine {name}"] / engine_s for name in ablations},
        "log": log,
    }
    print(f"  -> {summary['speedup_vs_captum']:.2f}x faster than captum, "
          f"{summary['speedup_vs_reference']:.1f}x faster than the reference loop, "
          f"{summary['engine_over_bare']:.2f}x the bare passes; max |diff| vs captum "
          f"{summary['max_abs_diff_vs_captum']:.1e}, vs reference {summary['max_abs_diff_vs_reference']:.1e}",
          flush=True)
    for name, ratio in summary["ablation_slowdown"].items():
        print(f"     engine {name}: {ratio:.2f}x the engine's time")
    return summary


def _captum_name(internal_batch_size: int | None) -> str:
    size = "all rows" if internal_batch_size is None else f"{internal_batch_size} rows"
    return f"captum IntegratedGradients per layer ({size} per pass)"


ABLATIONS = {"shortcut": "without the MLP shortcut", "caching": "without residual caching",
             "logits": "with full logits", "padding": "with padding (no sort, no trim)",
             "off": "all savings off"}


def _ablations(text: str) -> list[str]:
    if text == "none":
        return []
    keys = list(ABLATIONS) if text == "all" else text.split(",")
    return [ABLATIONS[key] for key in keys]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, a minute or two")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--wall", action="store_true",
                        help="compare wall times (default: this process's CPU time, which other jobs "
                             "sharing the machine disturb much less; meaningful with --threads 1)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--organism-facts", type=int, default=200)
    parser.add_argument("--gpt2-facts", type=int, default=32)
    parser.add_argument("--gpt2-steps", type=int, help="steps for the GPT-2-shaped case (default --steps)")
    parser.add_argument("--gpt2-target", default="logprob", choices=("prob", "logprob"),
                        help="P(answer) of a random 50k-vocabulary model is ~1e-10, so compare log P")
    parser.add_argument("--ref-facts", type=int, default=10, help="facts the slow reference runs on")
    parser.add_argument("--captum-ibs", default="0,800,160",
                        help="comma list of captum internal_batch_size values (rows per pass; 0: all "
                             "steps of all facts at once), each timed; the fastest counts")
    parser.add_argument("--cases", default="organism,gpt2")
    parser.add_argument("--ablations", default="all",
                        help="comma list of engine variants to time (all, none, or names: shortcut, "
                             "caching, logits, padding, off)")
    parser.add_argument("--gpt2-ablations", default="shortcut,caching,logits")
    parser.add_argument("--rounds", type=int, default=2, help="round-robin repetitions (fastest counts)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    captum_ibs = [int(v) or None for v in args.captum_ibs.split(",")]
    if args.quick:
        args.organism_facts, args.gpt2_facts, args.steps, args.ref_facts, args.rounds = 40, 4, 8, 3, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"cpu count {os.cpu_count()}; GPU: {'yes' if torch.cuda.is_available() else 'none'}")
    world = ns.FactWorld.synthetic()
    results: dict = {"command": " ".join(["python", *sys.argv]), "threads": args.threads}
    cases = args.cases.split(",")
    if "organism" in cases:
        org = ns.organism(world, size="small", progress=False)
        facts = world.facts[: args.organism_facts]
        results["organism"] = run_case("organism (small)", org.bridge, facts, steps=args.steps,
                                       ref_facts=args.ref_facts, captum_ibs=captum_ibs,
                                       ablations=_ablations(args.ablations), rounds=args.rounds,
                                       target="prob", cpu_clock=not args.wall)
    if "gpt2" in cases:
        model = gpt2_shaped(world)
        facts = world.facts[: args.gpt2_facts]
        results["gpt2"] = run_case("GPT-2-small-shaped random model", model, facts,
                                   steps=args.gpt2_steps or args.steps,
                                   ref_facts=min(args.ref_facts, 2 if not args.quick else 1),
                                   captum_ibs=captum_ibs,
                                   ablations=_ablations(args.gpt2_ablations), rounds=args.rounds,
                                   target=args.gpt2_target, cpu_clock=not args.wall)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
