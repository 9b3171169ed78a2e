"""Step 1's gradient check: the MLP's hand-written gradient against the numerical one and against jax.grad.

The guide checks its chain-rule gradient by forward differences on the first training name and prints
``gradient check | loss_n ... | loss_a ... | max diff ...``; this module adds the comparison with jax.grad.
Run it in float64: a forward difference of step 1e-5 in float32 is mostly rounding.

``gradient_check`` checks given parameters on given tokens; ``check_document`` is ``microgpt-jax gradcheck``:
a run's initial parameters (in float64) on one training document of a corpus, with pass/fail tolerances.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from microgpt_jax.config import DataConfig, GPTConfig, GradCheckConfig, TrainConfig
from microgpt_jax.errors import UserError
from microgpt_jax.model.loss import loss_fn
from microgpt_jax.model.mlp import analytic_value_and_grad, numerical_gradient
from microgpt_jax.model.types import Params


def _max_abs_diff(a: Params, b: Params) -> jax.Array:
    """The largest |a - b| over every entry of two same-shaped state_dicts."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(a[k] - b[k])) for k in a]))


@partial(jax.jit, static_argnames=("config", "eps"))
def _gradient_check(
    params: Params, tokens_BxT1: jax.Array, n_B: jax.Array, config: GPTConfig, eps: float
) -> tuple[jax.Array, ...]:
    def loss_of_params(p: Params) -> jax.Array:
        return loss_fn(p, tokens_BxT1, n_B, config)

    numerical = numerical_gradient(loss_of_params, params, eps)
    loss_a, analytic = analytic_value_and_grad(params, tokens_BxT1, n_B)
    autodiff = jax.grad(loss_fn)(params, tokens_BxT1, n_B, config)
    return loss_of_params(params), loss_a, _max_abs_diff(numerical, analytic), _max_abs_diff(analytic, autodiff)


def gradient_check(params: Params, tokens_BxT1: jax.Array, n_B: jax.Array, eps: float = 1e-5) -> dict[str, float]:
    """Step 1's gradient check: the hand-written gradient against the numerical one, and against jax.grad.

    Returns ``loss_n`` (the loss, ``loss_fn``'s, the numerical gradient differences from), ``loss_a`` (the one
    ``analytic_value_and_grad`` computes), ``max_diff`` (max |numerical - analytic| over all parameters) and
    ``max_diff_jax_grad`` (max |analytic - jax.grad(loss_fn)|). Run it in float64 (see ``numerical_gradient``).
    """
    wte = params["wte"]
    config = GPTConfig(vocab_size=wte.shape[0], n_embd=wte.shape[1], model="mlp")
    loss_n, loss_a, max_diff, max_diff_jax_grad = _gradient_check(
        params, jnp.asarray(tokens_BxT1), jnp.asarray(n_B), config, eps
    )
    return {
        "loss_n": float(loss_n),
        "loss_a": float(loss_a),
        "max_diff": float(max_diff),
        "max_diff_jax_grad": float(max_diff_jax_grad),
    }


def format_gradient_check(result: dict[str, float]) -> str:
    """The guide's line: ``gradient check | loss_n {:.6f} | loss_a {:.6f} | max diff {:.8f}``."""
    return (
        f"gradient check | loss_n {result['loss_n']:.6f} | loss_a {result['loss_a']:.6f} "
        f"| max diff {result['max_diff']:.8f}"
    )


@dataclass(frozen=True)
class DocumentCheck:
    """The gradient check of one training document: what was checked, the figures, and whether they pass."""

    index: int  # of the document among the training documents
    doc: str
    n: int  # predicted positions, len([BOS] + doc + [BOS]) - 1
    num_params: int
    result: dict[str, float]  # gradient_check's
    check: GradCheckConfig

    @property
    def numerical_ok(self) -> bool:
        """max |numerical - analytic| within ``check.tol_numerical``."""
        return self.result["max_diff"] <= self.check.tol_numerical

    @property
    def autodiff_ok(self) -> bool:
        """max |analytic - jax.grad| within ``check.tol_autodiff``."""
        return self.result["max_diff_jax_grad"] <= self.check.tol_autodiff

    @property
    def ok(self) -> bool:
        """Both comparisons within their tolerances."""
        return self.numerical_ok and self.autodiff_ok

    def lines(self) -> list[str]:
        """What ``microgpt-jax gradcheck`` prints: the document, the parameter count, the guide's line, then
        both comparisons in full precision with their tolerances."""
        r, c = self.result, self.check
        verdict = {True: "ok", False: "OUT OF TOLERANCE"}
        return [
            f"training doc {self.index}: {self.doc} ({self.n} predicted tokens)",
            f"num params: {self.num_params}",
            format_gradient_check(r),
            f"numerical vs analytic: max diff {r['max_diff']:.3e} (forward difference, eps {c.eps:g}; "
            f"tolerance {c.tol_numerical:g}): {verdict[self.numerical_ok]}",
            f"analytic vs jax.grad: max diff {r['max_diff_jax_grad']:.3e} (tolerance {c.tol_autodiff:g}): "
            f"{verdict[self.autodiff_ok]}",
        ]


def check_document(
    data: DataConfig, model: GPTConfig, train: TrainConfig, check: GradCheckConfig = GradCheckConfig()
) -> DocumentCheck:
    """What ``microgpt-jax gradcheck`` runs: the gradient check, in float64, of the parameters a run of ``model``
    and ``train`` starts from (seed, init std; drawn in float64, as ``train`` draws them with ``x64``) on
    training document ``check.doc`` of the corpus ``data`` describes, taken whole (the guide's
    ``n = len(tokens) - 1``). Only the MLP has a hand-written gradient: another model is a UserError."""
    from microgpt_jax.corpus.load import load_corpus
    from microgpt_jax.model.init import init_params
    from microgpt_jax.model.registry import num_params

    if model.model != "mlp":
        raise UserError(
            f"the gradient check is of the MLP's hand-written gradient (Steps 1 and 2), not `model` {model.model}'s: "
            "use `step` 1"
        )
    corpus = load_corpus(data)
    n_docs = len(corpus.train_docs)
    if check.doc >= n_docs:
        raise UserError(f"`doc` {check.doc}: there are {n_docs} training documents: pick one of 0..{n_docs - 1}")
    doc, tok = corpus.train_docs[check.doc], corpus.tokenizer
    config = dataclasses.replace(model, vocab_size=tok.vocab_size)
    tokens = [tok.bos, *tok.encode(doc), tok.bos]
    with jax.enable_x64(True):
        key = jax.random.key(train.seed)
        params = init_params(key, config, train.init_std, train.init_zero_out, jnp.float64)
        tokens_1xT1, n_1 = jnp.asarray([tokens], jnp.int32), jnp.asarray([len(tokens) - 1], jnp.int32)
        result = gradient_check(params, tokens_1xT1, n_1, check.eps)
    return DocumentCheck(check.doc, doc, len(tokens) - 1, num_params(params), result, check)
