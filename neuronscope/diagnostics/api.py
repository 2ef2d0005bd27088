"""``diagnose(before, after, facts, control=...)``: erase or hide, and which neurons hide.

See :func:`diagnose` for a worked example.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from neuronscope.attribution import attribute
from neuronscope.diagnostics.compat import check_compatible
from neuronscope.diagnostics.deltas import d_minus, d_plus, summarise_deltas
from neuronscope.diagnostics.diagnosis import Diagnosis
from neuronscope.diagnostics.null import NullTest, cluster_labels, paired_max_t, two_sample_max_t
from neuronscope.diagnostics.paper import paper_fact_deltas
from neuronscope.facts import Fact, FactSet
from neuronscope.scoring import get_tokenizer, model_context
from neuronscope.tokenization import encode_text, tokenize

__all__ = ["DEFINITIONS", "PERMUTE_BY", "check_compatible", "check_definition", "check_tokenizable",
           "diagnose"]

PERMUTE_BY = ("auto", "fact", "subject", "group")
DEFINITIONS = ("neuronscope", "paper")


def _is_attribution(value: Any) -> bool:
    return hasattr(value, "scores") and hasattr(value, "fact_ids") and hasattr(value, "layers")


def check_tokenizable(model: Any, facts: Sequence[Fact], tokenizer: Any = None, *, name: str = "facts"
                      ) -> None:
    """``ValueError`` if a fact does not fit the model's context or holds text the tokenizer
    cannot represent (unknown words, or characters mapped to the unknown token; whitespace is
    not checked)."""
    tok = get_tokenizer(model, tokenizer)
    try:
        tokenize(facts, tok, max_length=model_context(model))
    except ValueError as error:
        raise ValueError(f"{name}: the model cannot tokenise them: {error}") from error
    unk = getattr(tok, "unk_token_id", None)
    unk_text = getattr(tok, "unk_token", None)
    if unk is None:
        return
    for index, fact in enumerate(facts):
        # word by word: some tokenizers have no token for whitespace itself
        for word in f"{fact.prompt} {fact.answer}".split():
            if unk_text and unk_text in word:
                continue
            if int(unk) in encode_text(tok, word):
                label = fact.id or f"#{index}"
                raise ValueError(f"{name}: fact {label}: {word!r} holds characters the tokenizer "
                                 "maps to its unknown token")


def check_definition(definition: str, method: str | None = None) -> None:
    """``ValueError`` unless ``definition`` is one of ``DEFINITIONS`` and ``method`` (None: the
    definition's default) can compute it (``"paper"`` needs activation x gradient)."""
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {DEFINITIONS}, got {definition!r}")
    if definition == "paper" and method is not None and method != "grad_x_act":
        raise ValueError(f"definition='paper' is the paper's eqs. 4-5 on per-token activation x gradient "
                         f"(method='grad_x_act'), not method={method!r}: integrated gradients would need "
                         "per-token IG scores reduced by max/min over tokens, which is not the paper's "
                         "definition; use method='grad_x_act', or definition='neuronscope' for IG")


def _facts(values: Iterable[Fact] | None, name: str) -> list[Fact] | None:
    if values is None:
        return None
    out = list(values)
    if not out:
        raise ValueError(f"{name} is empty")
    bad = [type(f).__name__ for f in out if not isinstance(f, Fact)]
    if bad:
        raise ValueError(f"{name} must hold Fact records, found {bad[0]}")
    return out


def _rows(attr: Any, facts: list[Fact], name: str, offset: int = 0, field: str = "scores") -> Tensor:
    """Rows of ``attr.<field>`` for ``facts``: by fact id, or by position when facts carry no ids."""
    values = getattr(attr, field)
    ids = FactSet(facts).ids
    if all(f.id is not None for f in facts):
        index = {fid: i for i, fid in enumerate(attr.fact_ids)}
        missing = [fid for fid in ids if fid not in index]
        if missing:
            raise ValueError(f"{name}: attribution lacks facts {missing[:3]} ({len(missing)} missing); "
                             "attribute the target and control facts with the same ids")
        return values[[index[fid] for fid in ids]]
    stop = offset + len(facts)
    if values.shape[0] < stop:
        raise ValueError(f"{name}: facts without ids are matched by position, but the attribution "
                         f"holds {values.shape[0]} rows, fewer than {stop}")
    return values[offset:stop]


def _integration(attr: Any) -> tuple[str, Any]:
    """How an attribution integrated: ``("adaptive", tolerance)`` (its step count varies with the
    path) or ``("fixed", steps)``."""
    if getattr(attr, "meta", {}).get("adaptive"):
        return ("adaptive", getattr(attr, "tolerance", None))
    return ("fixed", getattr(attr, "steps", None))


def _check_attributions(pairs: Sequence[tuple[str, Any]]) -> None:
    first_name, first = pairs[0]
    for name, attr in pairs[1:]:
        for key in ("method", "target", "steps", "positions"):
            a, b = getattr(first, key, None), getattr(attr, key, None)
            if key == "steps":
                a, b = _integration(first), _integration(attr)
            if a != b:
                raise ValueError(f"attributions {first_name} and {name} differ in {key}: {a!r} vs {b!r}")
        if list(first.layers) != list(attr.layers):
            raise ValueError(f"attributions {first_name} and {name} cover different layers: "
                             f"{list(first.layers)} vs {list(attr.layers)}")
        if getattr(first, "sites", None) != getattr(attr, "sites", None):
            raise ValueError(f"attributions {first_name} and {name} cover different sites: "
                             f"{getattr(first, 'sites', None)} vs {getattr(attr, 'sites', None)}")
        if first.scores.shape[2] != attr.scores.shape[2]:
            raise ValueError(f"attributions {first_name} and {name} differ in MLP width: "
                             f"{first.scores.shape[2]} vs {attr.scores.shape[2]}")


COLLAPSED_P = 1e-3
# used when neither argument nor a precomputed attribution says otherwise
# (target log P: P collapses to ~1e-4 right after unlearning and scales every attribution of it)
ATTRIBUTION_DEFAULTS = {"method": "ig", "steps": None, "target": "logprob", "positions": "prompt",
                        "layers": None, "sites": None}
# definition="paper": the paper's activation x gradient of P (eq. 1)
PAPER_DEFAULTS = {"method": "grad_x_act", "steps": 1, "target": "prob", "positions": "prompt",
                  "layers": None, "sites": None}


def _median_target(attr: Any, facts: list[Fact]) -> float | None:
    values = getattr(attr, "target_input", None)
    if getattr(attr, "target", None) != "prob" or values is None:
        return None
    if all(f.id is not None for f in facts):
        index = {fid: i for i, fid in enumerate(attr.fact_ids)}
        values = values[[index[f.id] for f in facts if f.id in index]]
    else:
        values = values[: len(facts)]
    return float(values.median()) if len(values) else None


def _collapse_notes(before_attr: Any, after_attr: Any, facts: list[Fact]) -> list[str]:
    """Notes on P-target attributions that cannot be read: the original model does not know
    the facts, or the unlearned model gives them almost no probability (every attribution of
    P is scaled by P, so D+ and D- vanish and the result reads as erasing)."""
    before, after = _median_target(before_attr, facts), _median_target(after_attr, facts)
    if before is not None and before < COLLAPSED_P:
        return [f"the original model gives the target answers a median P of {before:.1e}: it may not "
                "know these facts (check ns.accuracy); D+ and D- of facts it never knew mean little"]
    if after is not None and after < COLLAPSED_P:
        return [f"the unlearned model's median P(answer) on the target facts is {after:.1e}: with "
                "target='prob' every attribution (and so D+ and D-) is scaled by P and vanishes, "
                "which reads as erasing; diagnose again with target='logprob' and rely on the flags"]
    return []


def _resolve_permute_by(permute_by: str, target: list[Fact], control: list[Fact]) -> str:
    """``auto``: subjects when they do not straddle target and control, else single facts."""
    if permute_by in ("subject", "group") and control:
        shared = {getattr(f, permute_by) for f in target if getattr(f, permute_by)} & {
            getattr(f, permute_by) for f in control if getattr(f, permute_by)}
        if shared:
            raise ValueError(f"permute_by={permute_by!r}: {len(shared)} {permute_by}(s) hold both target "
                             f"and control facts (e.g. {sorted(shared)[0]!r}); use permute_by='fact' or "
                             "control facts about other subjects")
    if permute_by != "auto":
        return permute_by
    if not control:
        return "subject" if all(f.subject for f in target) else "fact"
    target_subjects = {f.subject for f in target if f.subject}
    control_subjects = {f.subject for f in control if f.subject}
    if target_subjects and control_subjects and not target_subjects & control_subjects:
        return "subject"
    return "fact"


def _flatten(values: Tensor) -> Tensor:
    return values.reshape(values.shape[0], -1)


def diagnose(
    before: Any,
    after: Any,
    facts: Iterable[Fact],
    *,
    control: Iterable[Fact] | None = None,
    control_after: Any = None,
    method: str | None = None,
    steps: int | None = None,
    target: str | None = None,
    positions: str | None = None,
    layers: Sequence[int] | None = None,
    sites: str | Sequence[str] | None = None,
    definition: str = "neuronscope",
    alpha: float = 0.01,
    n_permutations: int = 1000,
    permute_by: str = "auto",
    seed: int = 0,
    attributions: tuple[Any, Any] | None = None,
    attribute_kwargs: dict | None = None,
    tokenizer: Any = None,
    progress: bool = True,
) -> Diagnosis:
    """Compare a model before and after unlearning on the target ``facts``.

    ``before`` / ``after`` are models (attributed here with ``method``, ``steps``, ``target``,
    ``positions``, ``layers``, ``sites``: by default integrated gradients of log P(answer), 20
    steps, prompt positions, every layer, the MLP neurons) or precomputed
    ``NeuronAttribution`` objects covering ``facts`` and ``control`` (reused as they are;
    ``attributions=(A_before, A_after)`` does the same).
    Settings left at None follow a precomputed attribution when one is given. A null is required: ``control``
    facts (typically the retain facts), and/or ``control_after``, a model fine-tuned from
    ``before`` for as many steps on unrelated data (or its attribution on ``facts``).

    A neuron is flagged when the max-T permutation test (``neuronscope.diagnostics.null``)
    finds its D- on the target facts above the null at family-wise error rate ``alpha``;
    with both nulls, it must pass both. Facts about one subject are not independent, so
    ``permute_by="auto"`` permutes whole subjects when every subject is wholly target or wholly
    control (else single facts); ``"fact"``, ``"subject"`` or ``"group"`` force a choice.

    ``definition="neuronscope"`` (default): per fact, d+ = max(A, 0) - max(A', 0) and
    d- = max(-A', 0) - max(-A, 0) on scores summed over the attributed tokens
    (``neuronscope.diagnostics.deltas``). ``definition="paper"``: eqs. 4-5 of the paper
    (``neuronscope.diagnostics.paper``): per-token activation x gradient of P reduced by max
    (D+, the after-score clipped at 0) and min (D-) over tokens; attributions need
    ``token_max`` / ``token_min`` (``attribute(..., token_extremes=True)``). The flags then
    test the paper's per-fact d- against the same null. ``sites`` (``"q"``, ``"k"``, ...,
    see ``neuronscope.attribution.sites``) attributes other places than the MLP neurons.

    Example:
        >>> import warnings
        >>> from neuronscope import FactWorld, unlearn
        >>> from neuronscope.tiny import tiny_model
        >>> world = FactWorld.synthetic(n_people=10)
        >>> forget, retain = world.facts.split(forget=0.5, seed=0)
        >>> before = tiny_model(tokenizer=world.tokenizer)               # stand-ins: untrained
        >>> after = unlearn(before, forget, retain, method="ga", max_steps=3, progress=False).bridge
        >>> with warnings.catch_warnings():                  # an untrained model warns of small P
        ...     warnings.simplefilter("ignore")
        ...     diag = diagnose(before, after, forget, control=retain, steps=4, progress=False)
        >>> len(diag.fact_ids) == len(forget), tuple(diag.d_minus.shape)    # [layer, neuron]
        (True, (2, 48))
        >>> "hide index" in diag.summary(), all(f.p_adjusted <= diag.alpha for f in diag.flagged)
        (True, True)
        >>> check = diag.verify(neurons=[(0, 1)], n_random=2)   # models and facts: from diagnose
        >>> check.neurons, 0 < check.p_accuracy <= 1
        ([(0, 1)], True)
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha (the family-wise false-positive rate) must be in (0, 1), got {alpha!r}")
    check_definition(definition, method)
    paper = definition == "paper"
    if permute_by not in PERMUTE_BY:
        raise ValueError(f"permute_by must be one of {PERMUTE_BY}, got {permute_by!r}")
    if not isinstance(n_permutations, int) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    if n_permutations + 1 < 1 / alpha:
        raise ValueError(f"n_permutations={n_permutations} cannot reach p-values below alpha={alpha}; "
                         f"use at least {int(1 / alpha)}")
    target_facts = _facts(facts, "facts")
    if target_facts is None:
        raise ValueError("facts is None")
    control_facts = _facts(control, "control") if control is not None else None
    if control_facts is None and control_after is None:
        raise ValueError("diagnose needs a null: control facts (e.g. the retain facts) and/or "
                         "control_after (a model fine-tuned on unrelated data)")
    permute_by = _resolve_permute_by(permute_by, target_facts, control_facts or [])
    if attributions is not None:
        if len(attributions) != 2 or not all(_is_attribution(a) for a in attributions):
            raise ValueError("attributions must be a pair (before, after) of NeuronAttribution")
        before_attr, after_attr = attributions
    else:
        before_attr = before if _is_attribution(before) else None
        after_attr = after if _is_attribution(after) else None
    models = [(name, value) for name, value in (("before", before), ("after", after),
                                                 ("control_after", control_after))
              if value is not None and not _is_attribution(value)]
    if len(models) >= 2:
        for name, model in models[1:]:
            check_compatible(models[0][1], model, names=(models[0][0], name), tokenizer=tokenizer)
    everything = target_facts + (control_facts or [])
    for _, model in models:
        check_tokenizable(model, target_facts, tokenizer, name="facts")
        if control_facts:
            check_tokenizable(model, control_facts, tokenizer, name="control")
    given = next((a for a in (before_attr, after_attr, control_after)
                  if a is not None and _is_attribution(a)), None)
    chosen = {"method": method, "steps": steps, "target": target, "positions": positions, "layers": layers,
              "sites": sites}
    for key, default in (PAPER_DEFAULTS if paper else ATTRIBUTION_DEFAULTS).items():
        if chosen[key] is None:
            chosen[key] = getattr(given, key, default) if given is not None else default
    if steps is None and given is not None and _integration(given)[0] == "adaptive":
        chosen["steps"] = None  # given adaptive attributions: the rest adaptive too, same tolerance
        options_tolerance = {"tolerance": given.tolerance}
    else:
        options_tolerance = {}
    if paper and given is not None and given.method != "grad_x_act":
        raise ValueError("definition='paper' needs activation x gradient attributions "
                         f"(method='grad_x_act'), the given ones are {given.method!r}")
    options = dict(**chosen, progress=progress, tokenizer=tokenizer,
                   **{**options_tolerance, **(attribute_kwargs or {})})
    if paper:
        options["token_extremes"] = True

    def attribution_of(value: Any, given: Any, facts_for: list[Fact]) -> Any:
        if given is not None:
            return given
        return attribute(value, facts_for, **options)

    before_attr = attribution_of(before, before_attr, everything)
    after_attr = attribution_of(after, after_attr, everything)
    null_attr = None
    if control_after is not None:
        null_attr = attribution_of(control_after, control_after if _is_attribution(control_after) else None,
                                   target_facts)
    pairs = [("before", before_attr), ("after", after_attr)]
    if null_attr is not None:
        pairs.append(("control_after", null_attr))
    _check_attributions(pairs)
    if paper:
        lacking = [name for name, attr in pairs if getattr(attr, "token_max", None) is None]
        if lacking:
            raise ValueError(f"definition='paper' needs per-token max/min scores; attribution(s) {lacking} "
                             "have none: attribute with token_extremes=True")

    notes = _collapse_notes(before_attr, after_attr, target_facts)
    for note in notes:
        warnings.warn(note, stacklevel=2)

    def fact_deltas(first: Any, second: Any, facts_for: list[Fact], name: str, offset: int = 0,
                    offset_second: int | None = None) -> tuple[Tensor, Tensor]:
        """Per-fact (d+, d-) of ``facts_for`` between two attributions, per ``definition``."""
        off2 = offset if offset_second is None else offset_second
        if not paper:
            a = _rows(first, facts_for, name, offset)
            b = _rows(second, facts_for, name, off2)
            return d_plus(a, b), d_minus(a, b)
        parts = [_rows(attr, facts_for, name, off, field) for attr, off in ((first, offset), (second, off2))
                 for field in ("token_max", "token_min")]
        return paper_fact_deltas(*parts)

    fact_plus, target_minus = fact_deltas(before_attr, after_attr, target_facts, "target")
    deltas = summarise_deltas(fact_plus, target_minus)
    shape = deltas.d_minus.shape

    tests: dict[str, NullTest] = {}
    control_mean = null_mean = None
    clusters = None
    if permute_by != "fact":
        clusters = cluster_labels([getattr(f, permute_by) or f"#{i}" for i, f in enumerate(everything)])
    if control_facts is not None:
        control_minus = fact_deltas(before_attr, after_attr, control_facts, "control", len(target_facts))[1]
        tests["control"] = two_sample_max_t(_flatten(target_minus), _flatten(control_minus),
                                            n_permutations=n_permutations, seed=seed, clusters=clusters)
        control_mean = control_minus.mean(0).float()
    if null_attr is not None:
        null_minus = fact_deltas(before_attr, null_attr, target_facts, "control_after", 0, 0)[1]
        tests["finetune"] = paired_max_t(
            _flatten(target_minus), _flatten(null_minus), n_permutations=n_permutations, seed=seed,
            clusters=clusters[: len(target_facts)] if clusters is not None else None)
        null_mean = null_minus.mean(0).float()
    p_adjusted = torch.stack([t.p_adjusted for t in tests.values()]).max(0).values.reshape(shape)
    statistic = next(iter(tests.values())).statistic.reshape(shape)
    null_names = {"control": f"{len(control_facts or [])} control facts", "finetune": "a control fine-tune"}
    meta = {
        "method": before_attr.method, "steps": int(before_attr.steps), "target": before_attr.target,
        "positions": getattr(before_attr, "positions", chosen["positions"]),
        "before_model": getattr(before_attr, "model_name", ""),
        "after_model": getattr(after_attr, "model_name", ""),
        "n_target": len(target_facts), "n_control": len(control_facts or []),
        "null": " and ".join(null_names[k] for k in tests),
        "tests": list(tests),
        "criterion": ("one-sided max-T permutation test of per-fact D- (target vs "
                      + " and ".join({"control": "control facts", "finetune": "control fine-tune"}[k]
                                     for k in tests)
                      + f"), {n_permutations} permutations by {permute_by}"),
        "n_permutations": n_permutations, "permute_by": permute_by, "seed": seed,
        "s0": {k: t.s0 for k, t in tests.items()},
        "notes": notes, "definition": definition,
    }
    diagnosis = Diagnosis(
        d_plus=deltas.d_plus, d_minus=deltas.d_minus, layers=list(before_attr.layers),
        fact_ids=FactSet(target_facts).ids, fact_d_plus=deltas.fact_d_plus,
        fact_d_minus=deltas.fact_d_minus, statistic=statistic, p_adjusted=p_adjusted, alpha=alpha,
        control_d_minus=control_mean, null_d_minus=null_mean,
        p_control=tests["control"].p_adjusted.reshape(shape) if "control" in tests else None,
        p_finetune=tests["finetune"].p_adjusted.reshape(shape) if "finetune" in tests else None,
        meta=meta, sites=getattr(before_attr, "sites", None),
    )
    diagnosis.inputs = {"before": None if _is_attribution(before) else before,
                        "after": None if _is_attribution(after) else after,
                        "facts": target_facts, "control": control_facts, "tokenizer": tokenizer}
    return diagnosis
