"""The fast attribution engine: integrated gradients over MLP neurons with no needless work.

For a chunk of facts the engine runs the model once (no gradients) and captures, at every
block from the lowest attributed layer up, the residual stream entering the block and the
other arguments the block receives (attention mask, rotary tables, ...). Then, for each
attributed layer ``l`` and all quadrature steps at once (rows = facts x steps), it runs only
blocks ``l..L-1`` on the cached residual, scales ``blocks.l.mlp.hook_post`` at the chosen
positions, reads logits only at the positions that predict an answer token, and takes one
backward pass to the scaled activations (never below them, never to the weights).

The bridge's own ``start_at_layer`` re-runs blocks ``0..l-1`` and discards them (checked in
TransformerLens 4.3), so the engine calls the blocks itself. On the first chunk the direct
path is checked against the model's own forward; where it disagrees (an architecture that
does extra work between the blocks and the logits) the engine falls back to full forwards.

Example:
    >>> from neuronscope import FactWorld, tokenize
    >>> from neuronscope.attribution.spec import AttributionSpec
    >>> from neuronscope.tiny import tiny_model
    >>> world = FactWorld.synthetic(n_people=10)
    >>> model = tiny_model(tokenizer=world.tokenizer)                 # untrained, 2 layers
    >>> batch = tokenize(world.facts[:3], world.tokenizer)
    >>> spec = AttributionSpec.make(method="ig", steps=4, quadrature="gauss_legendre",
    ...                             target="prob", positions="prompt", baseline="zero")
    >>> run_engine(model, batch, [0, 1], spec).scores.shape
    torch.Size([3, 2, 48])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from neuronscope.attribution.spec import AttributionSpec, position_mask, target_value
from neuronscope.hooks import d_mlp, mlp_hook_name, model_device, n_layers
from neuronscope.tokenization import FactBatch

__all__ = ["EngineOptions", "RawAttribution", "plan_chunks", "run_chunk", "run_engine"]


@dataclass(frozen=True)
class EngineOptions:
    """Switches for the savings (all on by default; the benchmark turns them off one by one)."""

    cache_residual: bool = True  # run from the attributed block on the cached residual
    mlp_shortcut: bool = True  # start above the block: add out(h') - out(h) to its cached output
    answer_logits_only: bool = True  # unembed only the rows that predict an answer token
    trim_padding: bool = True  # sort facts by length, trim each chunk to its longest fact
    max_memory: int | None = None  # bytes of activations per pass; None: automatic


@dataclass
class RawAttribution:
    """Per-fact tensors of one run (engine or reference), before metadata is attached."""

    scores: Float[Tensor, "fact layer neuron"]
    target_input: Float[Tensor, " fact"]
    target_baseline: Float[Tensor, "fact layer"] | None
    position_scores: Float[Tensor, "fact layer pos neuron"] | None = None
    position_mask: Bool[Tensor, "fact pos"] | None = None
    info: dict = field(default_factory=dict)


# --- answer read-out -------------------------------------------------------------------
@dataclass
class _Readout:
    """Which (row, position) pairs predict an answer token, and that token."""

    rows: Int[Tensor, " pred"]
    pos: Int[Tensor, " pred"]
    token: Int[Tensor, " pred"]
    n_rows: int

    @classmethod
    def of(cls, batch: FactBatch, width: int) -> _Readout:
        predicts = batch.answer_mask[:, 1 : width + 1]
        rows, pos = predicts.nonzero(as_tuple=True)
        return cls(rows, pos, batch.tokens[rows, pos + 1], len(batch))

    def repeat(self, copies: int) -> _Readout:
        """The read-out of each row repeated ``copies`` times (row-major: fact, copy)."""
        if copies == 1:
            return self
        offsets = torch.arange(copies, device=self.rows.device)
        rows = (self.rows[:, None] * copies + offsets[None, :]).flatten()
        order = torch.argsort(rows, stable=True)
        expand = lambda t: t[:, None].expand(-1, copies).flatten()[order]  # noqa: E731
        return _Readout(rows[order], expand(self.pos), expand(self.token), self.n_rows * copies)

    def logprob(self, logits: Float[Tensor, "pred vocab"]) -> Float[Tensor, " row"]:
        """Summed log-probability of the answer per row from logits at the read-out rows."""
        picked = logits.float().log_softmax(-1).gather(-1, self.token[:, None]).squeeze(-1)
        total = torch.zeros(self.n_rows, dtype=picked.dtype, device=picked.device)
        return total.index_add(0, self.rows, picked)

    def from_full(self, logits: Float[Tensor, "row seq vocab"]) -> Float[Tensor, " row"]:
        return self.logprob(logits[self.rows, self.pos])


# --- direct block runner ---------------------------------------------------------------
def _is_cache(value: Any) -> bool:
    return "Cache" in type(value).__name__


def _expand(value: Any, n_facts: int, copies: int) -> Any:
    """Repeat per-fact tensors (dim 0 == n_facts, ndim >= 2) ``copies`` times, fact-major."""
    if isinstance(value, Tensor):
        if copies == 1 or value.ndim < 2 or value.shape[0] != n_facts:
            return value
        if n_facts == 1:
            return value.expand(copies, *value.shape[1:])
        return value.repeat_interleave(copies, 0)
    if isinstance(value, (list, tuple)) and not _is_cache(value):
        return type(value)(_expand(v, n_facts, copies) for v in value)
    return value


@dataclass
class _BlockCall:
    """The arguments one block received in the captured forward pass."""

    args: tuple
    kwargs: dict
    hidden_in_args: bool
    residual: Tensor

    def call(self, block: torch.nn.Module, hidden: Tensor, n_facts: int, copies: int) -> Tensor:
        args = tuple(None if _is_cache(a) else _expand(a, n_facts, copies) for a in self.args)
        kwargs = {k: (False if k == "use_cache" else None if _is_cache(v) else _expand(v, n_facts, copies))
                  for k, v in self.kwargs.items()}
        if self.hidden_in_args:
            args = (hidden, *args[1:])
        else:
            kwargs["hidden_states"] = hidden
        out = block(*args, **kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out


class _Capture:
    """One ordinary forward pass that records each needed block's input and arguments and
    the MLP activations of the attributed layers."""

    def __init__(self, model: Any, tokens: Tensor, first_block: int, layers: Sequence[int]) -> None:
        self.tokens = tokens
        self.calls: dict[int, _BlockCall] = {}
        self.acts: dict[int, Tensor] = {}
        handles = []

        def pre_hook(index: int) -> Callable:
            def record(module: Any, args: tuple, kwargs: dict) -> None:
                if args and isinstance(args[0], Tensor):
                    residual, in_args = args[0], True
                else:
                    residual, in_args = kwargs["hidden_states"], False
                self.calls[index] = _BlockCall(tuple(args), dict(kwargs), in_args, residual.detach())
            return record

        def act_hook(layer: int) -> Callable:
            def record(act: Tensor, hook: Any) -> None:
                self.acts[layer] = act.detach()
            return record

        def out_hook(layer: int) -> Callable:
            def record(module: Any, args: tuple, output: Any) -> None:
                value = output[0] if isinstance(output, (tuple, list)) else output
                self.outputs[layer] = value.detach()
            return record

        self.outputs: dict[int, Tensor] = {}
        try:
            for index in range(first_block, n_layers(model)):
                handles.append(model.blocks[index].register_forward_pre_hook(pre_hook(index),
                                                                             with_kwargs=True))
                if index in layers:
                    handles.append(model.blocks[index].register_forward_hook(out_hook(index)))
            with torch.no_grad(), model.hooks(fwd_hooks=[(mlp_hook_name(layer), act_hook(layer))
                                                         for layer in layers]):
                self.logits = model(tokens)
        finally:
            for handle in handles:
                handle.remove()

    def run_from(self, model: Any, layer: int, hidden: Tensor, copies: int) -> Tensor:
        """Blocks ``layer..L-1`` on ``hidden`` (rows = captured facts x copies)."""
        n_facts = self.calls[layer].residual.shape[0]
        for index in range(layer, n_layers(model)):
            hidden = self.calls[index].call(model.blocks[index], hidden, n_facts, copies)
        return hidden


def _unembed(model: Any, final: Float[Tensor, "row seq d_model"], readout: _Readout) -> Tensor:
    picked = final[readout.rows, readout.pos]
    return model.unembed(model.ln_final(picked[None]))[0]


# --- memory planning -------------------------------------------------------------------
def _bytes_per_row(model: Any, width: int, n_blocks: int, n_pred: float, opts: EngineOptions) -> float:
    """Rough bytes of activations a row of ``width`` tokens keeps for backward over
    ``n_blocks`` blocks plus its answer logits. Conservative: measured peaks on the CPU in
    float32 were about half the budget (docs/performance.md)."""
    cfg = model.cfg
    size = torch.finfo(next(model.parameters()).dtype).bits // 8
    gated = 1.5 if getattr(cfg, "gated_mlp", False) else 1.0
    per_token_block = 20 * cfg.d_model + 6 * gated * d_mlp(model) + 4 * cfg.n_heads * width
    vocab = cfg.d_vocab
    logit_rows = n_pred if opts.answer_logits_only else width
    return size * (per_token_block * width * n_blocks) + 4 * 4 * vocab * logit_rows


def default_budget(model: Any) -> int:
    """Activation memory per pass: a quarter of free GPU memory, else 2 GiB on the CPU."""
    device = model_device(model)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.25)
    return 2 * 1024**3


def plan_chunks(lengths: Sequence[int], steps: int, bytes_per_row: Callable[[int], float],
                budget: float, batch_size: int | None, sort: bool = True) -> list[list[int]]:
    """Split facts into chunks (lists of indices), shortest first, each fitting ``budget``
    with all ``steps`` rows per fact (or one fact per chunk when even that does not fit;
    the steps are then split inside the chunk)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i)) if sort else list(range(len(lengths)))
    chunks: list[list[int]] = []
    current: list[int] = []
    for index in order:
        candidate = [*current, index]
        width = max(lengths[i] for i in candidate)
        too_big = bytes_per_row(width) * steps * len(candidate) > budget
        full = batch_size is not None and len(candidate) > batch_size
        if current and (too_big or full):
            chunks.append(current)
            current = [index]
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


# --- one chunk -------------------------------------------------------------------------
def _step_chunks(steps: int, rows_fit: int) -> list[slice]:
    size = max(1, min(steps, rows_fit))
    return [slice(s, min(steps, s + size)) for s in range(0, steps, size)]


MODES = ("shortcut", "blocks", "full")


def run_chunk(model: Any, batch: FactBatch, layers: Sequence[int], spec: AttributionSpec,
              opts: EngineOptions, *, mode: str | None = None, per_position: bool = False,
              budget: float | None = None, on_layer: Callable[[], None] | None = None) -> RawAttribution:
    """Attribution of one chunk of facts (a trimmed ``FactBatch`` on the model's device).

    ``mode`` is how the scaled layer's effect reaches the logits: ``"shortcut"`` (the block's
    output is linear in its MLP output, so ``out(h') - out(h)`` is added to the cached block
    output and only the blocks above run), ``"blocks"`` (blocks ``l..L-1`` run on the cached
    residual, the scaling done by a hook) or ``"full"`` (the model's whole forward pass).
    ``None``: the fastest mode that reproduces the model on this chunk (see ``info``).
    """
    device = model_device(model)
    n_facts, full_width = batch.tokens.shape
    width = int(batch.lengths.max()) - 1 if opts.trim_padding else full_width - 1
    tokens = batch.tokens[:, :width]
    mask = position_mask(batch, spec.positions)[:, :width].to(device)
    readout = _Readout.of(batch, width)
    first = min(layers)
    cached = opts.cache_residual and mode != "full"
    capture = _Capture(model, tokens, first if cached else n_layers(model), layers)
    target_input = target_value(readout.from_full(capture.logits), spec.target)
    if mode is None:  # decided on a few facts (a probe costs two copies of each row, three ways)
        probe = slice(0, min(n_facts, 4))
        small = batch[probe]
        small_width = int(small.lengths.max()) - 1 if opts.trim_padding else width
        small_tokens = small.tokens[:, :small_width]
        mode = _choose_mode(model, _Capture(model, small_tokens, first, layers), first,
                            _Readout.of(small, small_width), mask[probe, :small_width], small_tokens, opts)
    alphas = spec.alphas.to(device)
    weights = spec.weights.to(device)
    steps = len(alphas)
    n_neuron = d_mlp(model)
    scores = torch.zeros(n_facts, len(layers), n_neuron, device=device)
    baseline_values = torch.zeros(n_facts, len(layers), device=device)
    pos_scores = torch.zeros(n_facts, len(layers), width, n_neuron, device=device) if per_position else None
    rows_fit = steps
    if budget is not None:
        per_row = _bytes_per_row(model, width, n_layers(model) - first if mode != "full" else n_layers(model),
                                 readout.rows.numel() / max(1, n_facts), opts)
        rows_fit = max(1, int(budget // (per_row * n_facts)))
    for li, layer in enumerate(layers):
        h = capture.acts[layer]
        grad_sum = torch.zeros_like(h)
        for part in _step_chunks(steps, rows_fit):
            copies = part.stop - part.start
            alpha_rows = alphas[part].repeat(n_facts)
            value, leaf = _forward(model, capture, layer, copies, alpha_rows, mask, readout, tokens, opts,
                                   spec.target, mode)
            (grad,) = torch.autograd.grad(value.sum(), leaf)
            grad = grad.view(n_facts, copies, *grad.shape[1:])
            grad_sum += torch.einsum("fstn,s->ftn", grad, weights[part].to(grad.dtype))
        per_pos = h * grad_sum * mask[..., None]  # zero baseline: h - b = h
        scores[:, li] = per_pos.sum(1)
        if pos_scores is not None:
            pos_scores[:, li] = per_pos
        with torch.no_grad():
            value, _ = _forward(model, capture, layer, 1, torch.zeros(n_facts, device=device), mask, readout,
                                tokens, opts, spec.target, mode)
        baseline_values[:, li] = value
        if on_layer is not None:
            on_layer()
    info = {"mode": mode}
    return RawAttribution(scores, target_input.detach(), baseline_values, pos_scores, mask, info)


def _scaled_leaf(h: Tensor, alpha_rows: Tensor, mask_rows: Tensor) -> Tensor:
    """``baseline + alpha * (h - baseline)`` at masked positions (zero baseline), ``h``
    elsewhere, as a leaf the backward pass stops at."""
    one = torch.ones((), dtype=h.dtype, device=h.device)
    scale = torch.where(mask_rows, alpha_rows[:, None].to(h.dtype), one)
    return (h * scale[..., None]).requires_grad_(torch.is_grad_enabled())


def _forward(model: Any, capture: _Capture, layer: int, copies: int, alpha_rows: Tensor, mask: Tensor,
             readout: _Readout, tokens: Tensor, opts: EngineOptions, target: str,
             mode: str) -> tuple[Tensor, Tensor]:
    """Target per row (facts x copies) with layer ``layer`` scaled by ``alpha_rows``, and the
    scaled activations (the leaf the gradient is taken at)."""
    n_facts = mask.shape[0]
    reps = readout.repeat(copies)
    mask_rows = mask.repeat_interleave(copies, 0) if copies > 1 else mask

    def rows(t: Tensor) -> Tensor:
        return _expand(t, n_facts, copies)

    logits = final = None
    if mode == "shortcut":
        h = capture.acts[layer]
        leaf = _scaled_leaf(rows(h), alpha_rows, mask_rows)
        out = model.blocks[layer].mlp._modules["out"]
        with torch.no_grad():
            base = capture.outputs[layer] - out(h)
        final = rows(base) + out(leaf)
        if layer + 1 < n_layers(model):
            final = capture.run_from(model, layer + 1, final, copies)
    else:
        store: dict = {}

        def hook(act: Tensor, hook: Any) -> Tensor:
            store["leaf"] = _scaled_leaf(act.detach(), alpha_rows, mask_rows)
            return store["leaf"]

        with model.hooks(fwd_hooks=[(mlp_hook_name(layer), hook)]):
            if mode == "blocks":
                final = capture.run_from(model, layer, rows(capture.calls[layer].residual), copies)
            else:
                logits = model(tokens.repeat_interleave(copies, 0) if copies > 1 else tokens)
        leaf = store["leaf"]
    if final is not None:
        logits = (_unembed(model, final, reps) if opts.answer_logits_only
                  else model.unembed(model.ln_final(final)))
    elif opts.answer_logits_only:
        logits = logits[reps.rows, reps.pos]
    logp = reps.from_full(logits) if logits.ndim == 3 else reps.logprob(logits)
    return target_value(logp, target), leaf


def _choose_mode(model: Any, capture: _Capture, first: int, readout: _Readout, mask: Tensor, tokens: Tensor,
                 opts: EngineOptions) -> str:
    """The fastest mode that reproduces the model's own forward pass on this chunk: the
    cached blocks must give the model's logits, and the shortcut / block paths must give the
    full path's target with the layer scaled (checked with rows scaled by 1 and by 0.5)."""
    if not opts.cache_residual:
        return "full"
    twice = readout.repeat(2)
    expected = capture.logits[twice.rows // 2, twice.pos]
    try:
        with torch.no_grad():
            hidden = _expand(capture.calls[first].residual, readout.n_rows, 2)
            direct = _unembed(model, capture.run_from(model, first, hidden, 2), twice)
    except Exception as error:  # blocks that cannot be called alone
        warnings.warn(f"attribution: blocks cannot be run directly ({error!r}); using full forward passes",
                      stacklevel=4)
        return "full"
    scale = float(expected.abs().max()) + 1.0
    if direct.shape != expected.shape or float((direct - expected).abs().max()) > 1e-4 * scale:
        warnings.warn("attribution: running blocks directly does not reproduce the model's logits for "
                      "this architecture; using full forward passes (slower, same numbers)", stacklevel=4)
        return "full"
    alpha_rows = torch.tensor([1.0, 0.5], device=mask.device).repeat(mask.shape[0])
    values = {}
    candidates = ("full", "shortcut", "blocks") if opts.mlp_shortcut else ("full", "blocks")
    for mode in candidates:
        try:
            with torch.no_grad():
                values[mode] = _forward(model, capture, first, 2, alpha_rows, mask, readout, tokens,
                                        EngineOptions(), "logprob", mode)[0]
        except Exception:  # an unavailable path is simply not chosen
            continue
    for mode in candidates[1:]:
        if mode in values and torch.allclose(values[mode], values["full"], rtol=1e-4, atol=1e-4):
            return mode
    return "full"


# --- the whole run ---------------------------------------------------------------------
def run_engine(model: Any, batch: FactBatch, layers: Sequence[int], spec: AttributionSpec, *,
               opts: EngineOptions = EngineOptions(), batch_size: int | None = None,
               per_position: bool = False, chunk_ids: Iterable[int] | None = None,
               progress: Callable[[int], None] | None = None,
               plan: list[list[int]] | None = None) -> RawAttribution:
    """Attribution of every fact in ``batch`` (only the chunks ``chunk_ids`` of ``plan`` when
    given; the other facts' rows stay zero), assembled in the batch's fact order."""
    device = model_device(model)
    if plan is None:
        plan = make_plan(model, batch, layers, spec, opts=opts, batch_size=batch_size)
    chunk_ids = range(len(plan)) if chunk_ids is None else chunk_ids
    n_facts, full_width = batch.tokens.shape
    n_neuron = d_mlp(model)
    scores = torch.zeros(n_facts, len(layers), n_neuron)
    target_input = torch.zeros(n_facts)
    target_baseline = torch.zeros(n_facts, len(layers))
    pos_scores = torch.zeros(n_facts, len(layers), full_width, n_neuron) if per_position else None
    pos_mask = torch.zeros(n_facts, full_width, dtype=torch.bool)
    budget = opts.max_memory if opts.max_memory is not None else default_budget(model)
    mode = None if opts.cache_residual else "full"
    for chunk_id in chunk_ids:
        rows = torch.tensor(plan[chunk_id])
        sub = batch[rows] if opts.trim_padding else _untrimmed(batch, rows)
        raw = run_chunk(model, sub.to(device), layers, spec, opts, mode=mode, per_position=per_position,
                        budget=budget, on_layer=(lambda: progress(1)) if progress else None)
        mode = raw.info["mode"]  # decided on the first chunk, kept for the others
        scores[rows] = raw.scores.float().cpu()
        target_input[rows] = raw.target_input.float().cpu()
        target_baseline[rows] = raw.target_baseline.float().cpu()
        width = raw.position_mask.shape[1]
        pos_mask[rows, :width] = raw.position_mask.cpu()
        if pos_scores is not None:
            pos_scores[rows, :, :width] = raw.position_scores.float().cpu()
    info = {"mode": mode or "none", "chunks": len(plan)}
    return RawAttribution(scores, target_input, target_baseline, pos_scores, pos_mask, info)


def _untrimmed(batch: FactBatch, rows: Tensor) -> FactBatch:
    return FactBatch(batch.tokens[rows], batch.attention_mask[rows], batch.prompt_mask[rows],
                     batch.answer_mask[rows])


def make_plan(model: Any, batch: FactBatch, layers: Sequence[int], spec: AttributionSpec, *,
              opts: EngineOptions = EngineOptions(), batch_size: int | None = None) -> list[list[int]]:
    """The chunks of facts the engine will run (deterministic for given inputs and budget)."""
    budget = opts.max_memory if opts.max_memory is not None else default_budget(model)
    lengths = batch.lengths.tolist() if opts.trim_padding else [batch.tokens.shape[1]] * len(batch)
    first = min(layers)
    n_blocks = n_layers(model) - first if opts.cache_residual else n_layers(model)
    n_pred = float(batch.answer_mask.sum()) / len(batch)
    steps = len(spec.alphas)
    # The step dimension may be split inside a chunk, so one fact always fits.
    per_row = lambda width: _bytes_per_row(model, width, n_blocks, n_pred, opts)  # noqa: E731
    return plan_chunks(lengths, steps, per_row, budget, batch_size, sort=opts.trim_padding)

