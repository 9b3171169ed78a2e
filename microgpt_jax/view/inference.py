"""What the model does with text: the probe scored token by token (next-token bars, p and -log p, attention
of every layer and head) and samples at a few temperatures, each marked as new or seen in the corpus."""

from __future__ import annotations

from typing import Any

import numpy as np

from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.view.svg import bars, esc, heatmap, num, sequential
from microgpt_jax.view.weights import labels

MAX_BARS = 27  # next-token bars per position: the whole character vocabulary; the most likely words otherwise
MARKS = {"new": "new", "train": "in training data", "held-out": "in held-out data", None: "corpus unknown"}


def _bar_ids(probs_V: np.ndarray) -> np.ndarray:
    if len(probs_V) <= MAX_BARS:
        return np.arange(len(probs_V))
    return np.sort(np.argsort(-probs_V, kind="stable")[:MAX_BARS])


def probe_table(result: dict[str, Any], tokenizer: Tokenizer) -> str:
    """Each prediction of the probe: the context's last token, the true next token, its p and -log p, and the
    whole next-token distribution as bars (the true token in red)."""
    lab = labels(tokenizer)
    toks, ids = result["tokens"], result["ids"]
    rows = []
    for t in range(len(ids) - 1):
        probs_V = result["probs_TxV"][t]
        show = _bar_ids(probs_V)
        target = ids[t + 1]
        hi = int(np.flatnonzero(show == target)[0]) if target in show else None
        tips = [
            f"P({lab[v]} | {''.join(toks[1 : t + 1]) if tokenizer.kind == 'char' else ' '.join(toks[1 : t + 1])}"
            f"{'…' if t else 'start'}) = {probs_V[v]:.5f}"
            for v in show
        ]
        chart = bars(
            [float(probs_V[v]) for v in show],
            [lab[v] for v in show],
            tips,
            highlight=hi,
            width=12 if tokenizer.kind == "char" else 14,
            height=36,
            label=f"next-token distribution at {t}",
        )
        p, nll = float(probs_V[target]), float(result["nll_T"][t])
        rows.append(
            f"<tr><td>{t}</td><td><code>{esc(toks[t])}</code></td><td><code>{esc(toks[t + 1])}</code></td>"
            f'<td title="{p:.8g}">{p:.4f}</td><td title="{nll:.8g}">{nll:.4f}</td><td>{chart}</td></tr>'
        )
    cols = ("t", "token", "next (true)", "p", "-log p", "P(next) over the vocabulary")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    return (
        f'<p>Mean NLL <b class="probe-nll" data-nll="{result["nll"]:.9g}">{result["nll"]:.4f}</b> over '
        f"{len(ids) - 1} predicted tokens (BOS + text + BOS, the training loss's rule).</p>"
        f'<table class="grid probe">{head}{"".join(rows)}</table>'
    )


def attention_maps(result: dict[str, Any]) -> str:
    """Every layer's and head's attention weights for the probe: row = query position, column = key."""
    w_LxHxTxT = result["attention_LxHxTxT"]
    L, H, T, _ = w_LxHxTxT.shape
    names = [f"{i}:{s}" for i, s in enumerate(result["tokens"][:T])]
    out = []
    for layer in range(L):
        figs = []
        for h in range(H):
            w_TxT = w_LxHxTxT[layer, h]

            def tip(i: int, j: int, v: float, layer: int = layer, h: int = h) -> str:
                return f"layer {layer} head {h}: {names[i]} attends to {names[j]} with weight {v:.5f}"

            grid = heatmap(
                w_TxT,
                sequential,
                tip,
                cell=16,
                row_labels=names,
                col_labels=[str(j) for j in range(T)],
                label=f"attention layer {layer} head {h}",
            )
            figs.append(
                f'<figure class="attn" data-layer="{layer}" data-head="{h}">{grid}'
                f"<figcaption>layer {layer}, head {h}</figcaption></figure>"
            )
        out.append(f"<h3>layer {layer}</h3><div class='row'>{''.join(figs)}</div>")
    return (
        "".join(out) + "<p class='note'>Row: the query (the position predicting its next token); column: the "
        "position it attends to; each row sums to 1 over the positions up to its own.</p>"
    )


def samples_table(by_temperature: dict[float, list[str]], marks: dict[float, list[str | None]]) -> str:
    """Samples per temperature, each marked new, in training data, or in held-out data."""
    cols = []
    for temp, texts in by_temperature.items():
        items = "".join(
            f'<li class="s-{esc(str(m))}"><span>{esc(t) or "(empty)"}</span> <small>{esc(MARKS[m])}</small></li>'
            for t, m in zip(texts, marks[temp], strict=True)
        )
        seen = sum(m in ("train", "held-out") for m in marks[temp])
        known = all(m is not None for m in marks[temp])
        tally = f"{len(texts) - seen} new of {len(texts)}" if known else f"{len(texts)} samples"
        cols.append(
            f"<div class='samples'><h3>temperature {num(temp, 3)}</h3><p class='note'>{tally}</p><ol>{items}</ol></div>"
        )
    return f"<div class='row'>{''.join(cols)}</div>"
