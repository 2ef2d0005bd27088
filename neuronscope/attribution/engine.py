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

from neuronscope.attribution.adaptive import PanelPath, PathRule, noise_floor
from neuronscope.attribution.spec import AttributionSpec, position_mask, target_value
from neuronscope.hooks import d_mlp, mlp_hook_name, model_device, n_layers
from neuronscope.tokenization import FactBatch

__all__ = ["Capture", "EngineOptions", "RawAttribution", "Readout", "bare_schedule",
           "bare_schedule_passes", "expand_rows", "path_rule", "plan_chunks", "run_chunk",
           "run_engine", "unembed_rows"]


@dataclass(frozen=True)
class EngineOptions:
    """Switches for the savings (all on by default; the benchmark turns them off one by one)."""

    cache_residual: bool = True  # run from the attributed block on the cached residual
    mlp_shortcut: bool = True  # start above the block: add out(h') - out(h) to its cached output
    answer_logits_only: bool = True  # unembed only the rows that predict an answer token
    trim_padding: bool = True  # sort facts by length, trim each chunk to its longest fact
    max_memory: int | None = None  # bytes of activations per pass; None: automatic
    panel_points: int = 4  # adaptive rule (steps=None): Gauss-Legendre points per panel
    initial_panels: int = 2  # adaptive rule: panels before any refinement


def path_rule(spec: AttributionSpec, opts: EngineOptions = EngineOptions()) -> PathRule:
    """How the engine integrates the path for ``spec`` (``ValueError`` on a bad setting)."""
    if spec.adaptive:
        return PathRule(tolerance=spec.tolerance, max_steps=spec.max_steps, points=opts.panel_points,
                        initial_panels=opts.initial_panels, floor=noise_floor(spec.target)).check()
    return PathRule(tolerance=spec.tolerance, alphas=spec.alphas, weights=spec.weights,
                    floor=noise_floor(spec.target)).check()


@dataclass
class RawAttribution:
    """Per-fact tensors of one run (engine or reference), before metadata is attached."""

    scores: Float[Tensor, "fact layer neuron"]
    target_input: Float[Tensor, " fact"]
    target_baseline: Float[Tensor, "fact layer"] | None
    position_scores: Float[Tensor, "fact layer pos neuron"] | None = None
    position_mask: Bool[Tensor, "fact pos"] | None = None
    info: dict = field(default_factory=dict)
    steps_used: Int[Tensor, "fact layer"] | None = None  # gradient evaluations per fact and layer


# --- answer read-out -------------------------------------------------------------------
@dataclass
class Readout:
    """Which (row, position) pairs predict an answer token, and that token."""

    rows: Int[Tensor, " pred"]
    pos: Int[Tensor, " pred"]
    token: Int[Tensor, " pred"]
    n_rows: int

    @classmethod
    def of(cls, batch: FactBatch, width: int) -> Readout:
        predicts = batch.answer_mask[:, 1 : width + 1]
        rows, pos = predicts.nonzero(as_tuple=True)
        return cls(rows, pos, batch.tokens[rows, pos + 1], len(batch))

    def repeat(self, copies: int) -> Readout:
        """The read-out of each row repeated ``copies`` times (row-major: fact, copy)."""
        if copies == 1:
            return self
        offsets = torch.arange(copies, device=self.rows.device)
        rows = (self.rows[:, None] * copies + offsets[None, :]).flatten()
        order = torch.argsort(rows, stable=True)
        expand = lambda t: t[:, None].expand(-1, copies).flatten()[order]  # noqa: E731
        return Readout(rows[order], expand(self.pos), expand(self.token), self.n_rows * copies)

    def select(self, index: Int[Tensor, " row"]) -> Readout:
        """The read-out of rows whose facts are ``index`` (row ``r`` reads fact ``index[r]``)."""
        index = index.to(self.rows.device)
        counts = torch.bincount(self.rows, minlength=self.n_rows)
        starts = torch.cumsum(counts, 0) - counts
        per_row = counts[index]
        row_of_entry = torch.arange(index.numel(), device=index.device).repeat_interleave(per_row)
        first_entry = torch.cumsum(per_row, 0) - per_row
        entry = starts[index][row_of_entry] + torch.arange(row_of_entry.numel(), device=index.device) \
            - first_entry[row_of_entry]
        return Readout(row_of_entry, self.pos[entry], self.token[entry], index.numel())

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


def _row_index(n_facts: int, rows: int | Tensor, device: Any = None) -> Tensor:
    """The fact of each row: ``rows`` copies of each fact (fact-major), or an index as given."""
    if isinstance(rows, Tensor):
        return rows
    return torch.arange(n_facts, device=device).repeat_interleave(rows)


def expand_rows(value: Any, n_facts: int, rows: int | Tensor) -> Any:
    """Per-fact tensors (dim 0 == n_facts, ndim >= 2) taken row by row: ``rows`` copies of
    each fact (fact-major) or the facts named by an index tensor."""
    if isinstance(value, Tensor):
        if value.ndim < 2 or value.shape[0] != n_facts or (isinstance(rows, int) and rows == 1):
            return value
        if n_facts == 1:
            count = rows if isinstance(rows, int) else rows.numel()
            return value.expand(count, *value.shape[1:])
        if isinstance(rows, int):
            return value.repeat_interleave(rows, 0)
        return value.index_select(0, rows.to(value.device))
    if isinstance(value, (list, tuple)) and not _is_cache(value):
        return type(value)(expand_rows(v, n_facts, rows) for v in value)
    return value


@dataclass
class _BlockCall:
    """The arguments one block received in the captured forward pass."""

    args: tuple
    kwargs: dict
    hidden_in_args: bool
    residual: Tensor

    def call(self, block: torch.nn.Module, hidden: Tensor, n_facts: int, rows: int | Tensor) -> Tensor:
        args = tuple(None if _is_cache(a) else expand_rows(a, n_facts, rows) for a in self.args)
        kwargs = {k: (False if k == "use_cache" else None if _is_cache(v) else expand_rows(v, n_facts, rows))
                  for k, v in self.kwargs.items()}
        if self.hidden_in_args:
            args = (hidden, *args[1:])
        else:
            kwargs["hidden_states"] = hidden
        out = block(*args, **kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out


class Capture:
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

    def run_from(self, model: Any, layer: int, hidden: Tensor, rows: int | Tensor) -> Tensor:
        """Blocks ``layer..L-1`` on ``hidden`` (rows: copies of each captured fact, or the
        fact of each row)."""
        n_facts = self.calls[layer].residual.shape[0]
        for index in range(layer, n_layers(model)):
            hidden = self.calls[index].call(model.blocks[index], hidden, n_facts, rows)
        return hidden


def unembed_rows(model: Any, final: Float[Tensor, "row seq d_model"], readout: Readout) -> Tensor:
    """The logits of the answer-predicting rows only: ``final`` picked at the read-out's (row, position)
    pairs, through the final norm and the unembedding."""
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


MAX_PADDING = 0.25  # a chunk's longest fact is at most this much longer than its shortest


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
    the steps are then split inside the chunk), and (when sorting) none padding a fact by
    more than ``MAX_PADDING`` of its length."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i)) if sort else list(range(len(lengths)))
    chunks: list[list[int]] = []
    current: list[int] = []
    for index in order:
        candidate = [*current, index]
        width = max(lengths[i] for i in candidate)
        too_big = bytes_per_row(width) * steps * len(candidate) > budget
        full = batch_size is not None and len(candidate) > batch_size
        padded = sort and width > (1 + MAX_PADDING) * min(lengths[i] for i in candidate)
        if current and (too_big or full or padded):
            chunks.append(current)
            current = [index]
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


# --- one chunk -------------------------------------------------------------------------
MODES = ("shortcut", "blocks", "full")


def run_chunk(model: Any, batch: FactBatch, layers: Sequence[int], spec: AttributionSpec,
              opts: EngineOptions, *, mode: str | None = None, per_position: bool = False,
              budget: float | None = None, on_layer: Callable[[], None] | None = None,
              rule: PathRule | None = None) -> RawAttribution:
    """Attribution of one chunk of facts (a trimmed ``FactBatch`` on the model's device).

    ``mode`` is how the scaled layer's effect reaches the logits: ``"shortcut"`` (the block's
    output is linear in its MLP output, so ``out(h') - out(h)`` is added to the cached block
    output and only the blocks above run), ``"blocks"`` (blocks ``l..L-1`` run on the cached
    residual, the scaling done by a hook) or ``"full"`` (the model's whole forward pass).
    ``None``: the fastest mode that reproduces the model on this chunk (see ``info``).
    ``rule``: how the path is integrated (default: the spec's rule; see ``adaptive``).
    """
    device = model_device(model)
    rule = rule if rule is not None else path_rule(spec, opts)
    n_facts, full_width = batch.tokens.shape
    width = int(batch.lengths.max()) - 1 if opts.trim_padding else full_width - 1
    tokens = batch.tokens[:, :width]
    mask = position_mask(batch, spec.positions)[:, :width].to(device)
    readout = Readout.of(batch, width)
    first = min(layers)
    cached = opts.cache_residual and mode != "full"
    capture = Capture(model, tokens, first if cached else n_layers(model), layers)
    target_input = target_value(readout.from_full(capture.logits), spec.target)
    if mode is None:  # decided on a few facts (a probe costs two copies of each row, three ways)
        probe = slice(0, min(n_facts, 4))
        small = batch[probe]
        small_width = int(small.lengths.max()) - 1 if opts.trim_padding else width
        small_tokens = small.tokens[:, :small_width]
        small_capture = capture if n_facts <= 4 and small_width == width and cached else \
            Capture(model, small_tokens, first, layers)
        mode = _choose_mode(model, small_capture, first, Readout.of(small, small_width),
                            mask[probe, :small_width], small_tokens, opts)
    n_neuron = d_mlp(model)
    scores = torch.zeros(n_facts, len(layers), n_neuron, device=device)
    baseline_values = torch.zeros(n_facts, len(layers), device=device)
    steps_used = torch.zeros(n_facts, len(layers), dtype=torch.long)
    pos_scores = torch.zeros(n_facts, len(layers), width, n_neuron, device=device) if per_position else None
    rows_fit = n_facts * rule.min_steps
    if budget is not None:
        per_row = _bytes_per_row(model, width, n_layers(model) - first if mode != "full" else n_layers(model),
                                 readout.rows.numel() / max(1, n_facts), opts)
        rows_fit = max(1, int(budget // per_row))
    run = _LayerRun(model, capture, readout, mask, tokens, opts, spec.target, mode, rows_fit)
    for li, layer in enumerate(layers):
        grad_sum, path = run.integrate(layer, target_input, rule)
        per_pos = capture.acts[layer] * grad_sum * mask[..., None]  # zero baseline: h - b = h
        scores[:, li] = per_pos.sum(1)
        if pos_scores is not None:
            pos_scores[:, li] = per_pos
        baseline_values[:, li] = path.f_start.to(device=device, dtype=baseline_values.dtype)
        steps_used[:, li] = path.steps_used()
        if on_layer is not None:
            on_layer()
    info = {"mode": mode, "passes": run.passes}
    return RawAttribution(scores, target_input.detach(), baseline_values, pos_scores, mask, info,
                          steps_used=steps_used)


class _LayerRun:
    """The passes of one chunk: targets (forward only) and gradients at any (fact, alpha) rows,
    split into parts of at most ``rows_fit`` rows."""

    def __init__(self, model: Any, capture: Capture, readout: Readout, mask: Tensor, tokens: Tensor,
                 opts: EngineOptions, target: str, mode: str, rows_fit: int) -> None:
        self.model, self.capture, self.readout, self.mask, self.tokens = model, capture, readout, mask, tokens
        self.opts, self.target, self.mode, self.rows_fit = opts, target, mode, rows_fit
        self.passes = {"value_rows": 0, "grad_rows": 0, "value_passes": 0, "grad_passes": 0}

    def _parts(self, n: int) -> list[slice]:
        size = max(1, self.rows_fit)
        return [slice(s, min(n, s + size)) for s in range(0, n, size)]

    def values(self, layer: int, facts: Tensor, alphas: Tensor) -> Tensor:
        """Targets with ``layer`` scaled by ``alphas[r]`` for fact ``facts[r]`` (no gradients)."""
        device = self.mask.device
        out = torch.empty(facts.numel(), dtype=torch.float64)
        for part in self._parts(facts.numel()):
            with torch.no_grad():
                value, _ = _forward(self.model, self.capture, layer, facts[part].to(device),
                                    alphas[part].to(device), self.mask, self.readout, self.tokens, self.opts,
                                    self.target, self.mode)
            out[part] = value.double().cpu()
            self.passes["value_passes"] += 1
        self.passes["value_rows"] += facts.numel()
        return out

    def integrate(self, layer: int, target_input: Tensor, rule: PathRule) -> tuple[Tensor, PanelPath]:
        """The weighted gradient sum of every fact along the path (panels refined per ``rule``),
        and the path's bookkeeping. ``f(0)`` rides along in the first gradient pass (its rows
        are left out of the backward's target), so a layer that needs no refinement costs one
        pass."""
        device = self.mask.device
        h = self.capture.acts[layer]
        masked_h = h * self.mask[..., None]
        path = PanelPath(None, target_input, rule)
        kept: dict[int, Tensor] = {}
        end_facts, end_alphas = path.endpoints()  # f(0): the baseline
        while path.pending():
            facts, alphas, weights, panels = path.nodes()
            n_grad = facts.numel()
            all_facts, all_alphas = torch.cat([facts, end_facts]), torch.cat([alphas, end_alphas])
            first_panel = int(panels.min())
            new = torch.zeros(path.n_panels - first_panel, *h.shape[1:], dtype=h.dtype, device=device)
            contributions = torch.zeros(n_grad, dtype=torch.float64)
            end_values = torch.zeros(end_facts.numel(), dtype=torch.float64)
            for part in self._parts(all_facts.numel()):
                rows = all_facts[part].to(device)
                count = max(0, min(part.stop, n_grad) - part.start)  # gradient rows in this part
                with torch.set_grad_enabled(count > 0):
                    value, leaf = _forward(self.model, self.capture, layer, rows, all_alphas[part].to(device),
                                           self.mask, self.readout, self.tokens, self.opts, self.target,
                                           self.mode)
                if part.stop > n_grad:
                    end_values[max(part.start, n_grad) - n_grad : part.stop - n_grad] = \
                        value[count:].detach().double().cpu()
                if count:
                    (grad,) = torch.autograd.grad(value[:count].sum(), leaf)
                    grad_rows = slice(part.start, part.start + count)
                    step_weights = weights[grad_rows].to(device=device, dtype=grad.dtype)
                    weighted = grad[:count] * step_weights[:, None, None]
                    contributions[grad_rows] = (weighted * masked_h.index_select(0, rows[:count])
                                                ).sum((1, 2)).double().cpu()
                    new.index_add_(0, (panels[grad_rows] - first_panel).to(device), weighted)
                self.passes["grad_passes"] += 1
            self.passes["grad_rows"] += n_grad
            self.passes["value_rows"] += end_facts.numel()
            if end_facts.numel():
                path.set_endpoints(end_values)
            path.record(contributions)
            for offset in range(new.shape[0]):
                kept[first_panel + offset] = new[offset]
            facts, alphas = path.endpoints()  # panel ends of the facts that miss the tolerance
            if facts.numel():
                path.set_endpoints(self.values(layer, facts, alphas))
            for p in path.refine():
                del kept[p]
            end_facts, end_alphas = facts[:0], alphas[:0]
        grad_sum = torch.zeros_like(h)
        owner = path.panel_facts()
        for p, g in kept.items():
            grad_sum[owner[p]] += g
        return grad_sum, path


def _scaled_leaf(h: Tensor, alpha_rows: Tensor, mask_rows: Tensor) -> Tensor:
    """``baseline + alpha * (h - baseline)`` at masked positions (zero baseline), ``h``
    elsewhere, as a leaf the backward pass stops at."""
    one = torch.ones((), dtype=h.dtype, device=h.device)
    scale = torch.where(mask_rows, alpha_rows[:, None].to(h.dtype), one)
    return (h * scale[..., None]).requires_grad_(torch.is_grad_enabled())


def _forward(model: Any, capture: Capture, layer: int, rows: Tensor, alpha_rows: Tensor, mask: Tensor,
             readout: Readout, tokens: Tensor, opts: EngineOptions, target: str,
             mode: str) -> tuple[Tensor, Tensor]:
    """Target per row (row ``r`` is fact ``rows[r]``) with layer ``layer`` scaled by
    ``alpha_rows``, and the scaled activations (the leaf the gradient is taken at)."""
    n_facts = mask.shape[0]
    reps = readout.select(rows)
    mask_rows = mask.index_select(0, rows)

    def expand(t: Tensor) -> Tensor:
        return expand_rows(t, n_facts, rows)

    logits = final = None
    if mode == "shortcut":
        h = capture.acts[layer]
        leaf = _scaled_leaf(expand(h), alpha_rows, mask_rows)
        out = model.blocks[layer].mlp._modules["out"]
        with torch.no_grad():
            base = capture.outputs[layer] - out(h)
        final = expand(base) + out(leaf)
        if layer + 1 < n_layers(model):
            final = capture.run_from(model, layer + 1, final, rows)
    else:
        store: dict = {}

        def hook(act: Tensor, hook: Any) -> Tensor:
            store["leaf"] = _scaled_leaf(act.detach(), alpha_rows, mask_rows)
            return store["leaf"]

        with model.hooks(fwd_hooks=[(mlp_hook_name(layer), hook)]):
            if mode == "blocks":
                final = capture.run_from(model, layer, expand(capture.calls[layer].residual), rows)
            else:
                logits = model(tokens.index_select(0, rows))
        leaf = store["leaf"]
    if final is not None:
        logits = (unembed_rows(model, final, reps) if opts.answer_logits_only
                  else model.unembed(model.ln_final(final)))
    elif opts.answer_logits_only:
        logits = logits[reps.rows, reps.pos]
    logp = reps.from_full(logits) if logits.ndim == 3 else reps.logprob(logits)
    return target_value(logp, target), leaf


def _choose_mode(model: Any, capture: Capture, first: int, readout: Readout, mask: Tensor, tokens: Tensor,
                 opts: EngineOptions) -> str:
    """The fastest mode that reproduces the model's own forward pass on this chunk: the
    shortcut / block paths must give the full path's target with the layer scaled (checked
    with rows scaled by 1 and by 0.5); before falling back from the shortcut, the cached
    blocks must give the model's logits."""
    if not opts.cache_residual:
        return "full"
    rows = _row_index(readout.n_rows, 2, mask.device)
    alpha_rows = torch.tensor([1.0, 0.5], device=mask.device).repeat(mask.shape[0])

    def value(mode: str) -> Tensor | None:
        try:
            with torch.no_grad():
                return _forward(model, capture, first, rows, alpha_rows, mask, readout, tokens,
                                EngineOptions(), "logprob", mode)[0]
        except Exception:  # an unavailable path is simply not chosen
            return None

    def same(candidate: Tensor | None, full: Tensor | None) -> bool:
        return full is not None and candidate is not None and torch.allclose(candidate, full, rtol=1e-4,
                                                                             atol=1e-4)

    full = value("full")
    if opts.mlp_shortcut and same(value("shortcut"), full):  # the usual case: one probe each
        return "shortcut"
    twice = readout.repeat(2)
    expected = capture.logits[twice.rows // 2, twice.pos]
    try:
        with torch.no_grad():
            hidden = expand_rows(capture.calls[first].residual, readout.n_rows, 2)
            direct = unembed_rows(model, capture.run_from(model, first, hidden, 2), twice)
    except Exception as error:  # blocks that cannot be called alone
        warnings.warn(f"attribution: blocks cannot be run directly ({error!r}); using full forward passes",
                      stacklevel=4)
        return "full"
    scale = float(expected.abs().max()) + 1.0
    if direct.shape != expected.shape or float((direct - expected).abs().max()) > 1e-4 * scale:
        warnings.warn("attribution: running blocks directly does not reproduce the model's logits for "
                      "this architecture; using full forward passes (slower, same numbers)", stacklevel=4)
        return "full"
    return "blocks" if same(value("blocks"), full) else "full"


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
    steps_used = torch.zeros(n_facts, len(layers), dtype=torch.long)
    rule = path_rule(spec, opts)
    passes: dict[str, int] = {}
    mode = None if opts.cache_residual else "full"
    for chunk_id in chunk_ids:
        rows = torch.tensor(plan[chunk_id])
        sub = batch[rows] if opts.trim_padding else _untrimmed(batch, rows)
        raw = run_chunk(model, sub.to(device), layers, spec, opts, mode=mode, per_position=per_position,
                        budget=budget, on_layer=(lambda: progress(1)) if progress else None, rule=rule)
        mode = raw.info["mode"]  # decided on the first chunk, kept for the others
        for key, count in raw.info["passes"].items():
            passes[key] = passes.get(key, 0) + count
        steps_used[rows] = raw.steps_used
        scores[rows] = raw.scores.float().cpu()
        target_input[rows] = raw.target_input.float().cpu()
        target_baseline[rows] = raw.target_baseline.float().cpu()
        width = raw.position_mask.shape[1]
        pos_mask[rows, :width] = raw.position_mask.cpu()
        if pos_scores is not None:
            pos_scores[rows, :, :width] = raw.position_scores.float().cpu()
    info = {"mode": mode or "none", "chunks": len(plan), **passes}
    return RawAttribution(scores, target_input, target_baseline, pos_scores, pos_mask, info,
                          steps_used=steps_used)


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
    steps = path_rule(spec, opts).min_steps
    # The step dimension may be split inside a chunk, so one fact always fits.
    per_row = lambda width: _bytes_per_row(model, width, n_blocks, n_pred, opts)  # noqa: E731
    return plan_chunks(lengths, steps, per_row, budget, batch_size, sort=opts.trim_padding)



def bare_schedule_passes(model: Any, batch: FactBatch, layers: Sequence[int],
                         steps: Int[Tensor, "fact layer"], target: str = "prob") -> None:
    """Only the passes a step schedule cannot avoid (a lower bound for benchmarks): for each
    layer, one forward and backward over ``steps[f, i]`` rows of each fact ``f`` from the
    layer's MLP output projection upward, logits only where an answer token is predicted,
    facts grouped by exact length (no padding). No panel ends, no baseline, no checks.
    Benchmarks time the closures of :func:`bare_schedule`, which leave out the caching pass."""
    for run in bare_schedule(model, batch, layers, steps, target):
        run()


def bare_schedule(model: Any, batch: FactBatch, layers: Sequence[int], steps: Int[Tensor, "fact layer"],
                  target: str = "prob") -> list[Callable[[], None]]:
    """The work of :func:`bare_schedule_passes` as closures, one per (layer, length group),
    with the caching passes already run (so that timing the closures times only the passes)."""
    device = model_device(model)
    lengths = batch.lengths
    runs: list[Callable[[], None]] = []
    groups = [torch.nonzero(lengths == n).flatten() for n in lengths.unique()]
    for facts in groups:
        sub = batch[facts].to(device)
        width = sub.tokens.shape[1] - 1
        capture = Capture(model, sub.tokens[:, :width], min(layers), layers)
        readout = Readout.of(sub, width)
        for li, layer in enumerate(layers):
            counts = steps[facts, li].to(device)
            if int(counts.sum()) == 0:
                continue
            rows = torch.arange(len(facts), device=device).repeat_interleave(counts)

            def run(layer: int = layer, rows: Tensor = rows, capture: Capture = capture,
                    readout: Readout = readout) -> None:
                out = model.blocks[layer].mlp._modules["out"]
                h = capture.acts[layer]
                leaf = expand_rows(h, h.shape[0], rows).clone().requires_grad_(True)
                with torch.no_grad():
                    base = capture.outputs[layer] - out(h)
                hidden = expand_rows(base, h.shape[0], rows) + out(leaf)
                if layer + 1 < n_layers(model):
                    hidden = capture.run_from(model, layer + 1, hidden, rows)
                reps = readout.select(rows)
                value = target_value(reps.logprob(unembed_rows(model, hidden, reps)), target)
                torch.autograd.grad(value.sum(), leaf)

            runs.append(run)
    return runs
