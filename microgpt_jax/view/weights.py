"""The parameters drawn: every matrix as a diverging heatmap with its norm, the bigram's table as the count
grid with tokens on both axes, token embeddings projected to 2-D, position embeddings compared."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from microgpt_jax.corpus.load import Corpus
from microgpt_jax.corpus.tokenizer import Tokenizer
from microgpt_jax.model.bigram import count_bigrams
from microgpt_jax.view.svg import diverging, esc, heatmap, num, sequential, wrap

MAX_LABELS = 60  # tokens labelled in the embedding map
MAX_SVG_CELLS = 2048  # a larger matrix is drawn as an image (one tooltip for the whole matrix)


def labels(tokenizer: Tokenizer) -> list[str]:
    """Axis labels of the vocabulary: its entries, then ``.`` for BOS (the guide's mark for a name's ends)."""
    return [*tokenizer.vocab, "."]


def _png(rgb_RxCx3: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of the array (no filter)."""
    R, C, _ = rgb_RxCx3.shape
    raw = b"".join(b"\x00" + rgb_RxCx3[i].astype(np.uint8).tobytes() for i in range(R))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = struct.pack(">IIBBBBB", C, R, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _diverging_rgb(w_RxC: np.ndarray, vmax: float) -> np.ndarray:
    t_RxC = np.clip(np.abs(w_RxC) / vmax, 0, 1)[..., None] if vmax > 0 else np.zeros((*w_RxC.shape, 1))
    red, blue = np.array([178, 24, 43]), np.array([33, 102, 172])
    target = np.where((w_RxC > 0)[..., None], red, blue)
    return np.round(255 + (target - 255) * t_RxC)


def matrix(name: str, w_RxC: np.ndarray, row_labels: Sequence[str] | None = None) -> str:
    """One parameter matrix: a diverging heatmap (scale symmetric at its largest |value|) and its norms."""
    w_RxC = np.asarray(w_RxC, np.float64)
    R, C = w_RxC.shape
    vmax = float(np.max(np.abs(w_RxC))) if w_RxC.size else 0.0
    norm, rms = float(np.linalg.norm(w_RxC)), float(np.sqrt(np.mean(w_RxC**2))) if w_RxC.size else 0.0
    caption = f"{name} ({R}×{C}): ‖W‖ = {num(norm, 4)}, rms {num(rms, 3)}, |max| {num(vmax, 3)}"
    flip = R > 2 * C and row_labels is None  # a tall matrix is drawn lying down (tooltips keep its indices)
    shown_RxC = w_RxC.T if flip else w_RxC
    if flip:
        caption += ", drawn transposed"
    cell = float(np.clip(min(440 / max(shown_RxC.shape[1], 1), 320 / max(shown_RxC.shape[0], 1)), 2, 12))
    if w_RxC.size <= MAX_SVG_CELLS:
        rl = list(row_labels) if row_labels is not None and cell >= 10 else None
        body = heatmap(
            shown_RxC,
            lambda v: diverging(v, vmax),
            lambda i, j, v: f"{name}[{j if flip else i}, {i if flip else j}] = {v:.6g}",
            cell=cell,
            row_labels=rl,
            label=name,
        )
    else:
        uri = base64.b64encode(_png(_diverging_rgb(shown_RxC, vmax))).decode()
        R, C = shown_RxC.shape
        body = (
            f'<img class="px" width="{C * cell:.0f}" height="{R * cell:.0f}" alt="{esc(name)}" '
            f'title="{esc(caption)} (drawn as an image: {R * C} values)" src="data:image/png;base64,{uri}">'
        )
    return (
        f'<figure class="mat" data-name="{esc(name)}" data-norm="{norm:.9g}">{body}'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def all_matrices(params: dict[str, np.ndarray], tokenizer: Tokenizer) -> str:
    """Every matrix of the state_dict, in its order, rows labelled by token where they are tokens."""
    vocab_rows = {"wte", "lm_head", "mlp_fc2"}
    out = []
    for name, w in params.items():
        rows = labels(tokenizer) if name in vocab_rows and len(tokenizer.vocab) <= 64 else None
        if name == "wpe":
            rows = [str(i) for i in range(w.shape[0])]
        out.append(matrix(name, w, rows))
    return "".join(out)


def bigram_counts(corpus: Corpus, block_size: int, count: str, steps: int) -> np.ndarray:
    """The counts the run's table was built from: every training document, or (counting online) the first
    ``steps`` of them in the order the steps took them (step s: document s mod N)."""
    tok, n, _, _ = corpus.encoded(block_size)
    V = corpus.tokenizer.vocab_size
    if count != "online":
        return count_bigrams(tok, n, V)
    N = len(n)
    full, rest = divmod(steps, N)
    return full * count_bigrams(tok, n, V) + count_bigrams(tok[:rest], n[:rest], V)


def bigram_grid(logp_VxV: np.ndarray, tokenizer: Tokenizer, counts_VxV: np.ndarray | None) -> str:
    """The bigram's table: row = current token, column = next token, colour = P(next | current), the count in
    each cell (when the corpus is readable), tooltips with both."""
    p_VxV = np.exp(np.asarray(logp_VxV, np.float64))
    lab = labels(tokenizer)
    V = len(lab)
    if V > 64:
        return matrix("P(next | current)", p_VxV) + "<p class='note'>Too many tokens to label each cell.</p>"
    vmax = float(p_VxV.max())

    def tip(i: int, j: int, v: float) -> str:
        c = "" if counts_VxV is None else f"count {int(counts_VxV[i, j])}, "
        return f"{lab[i]} → {lab[j]}: {c}p = {v:.5f}, -log p = {-np.log(v):.4f}"

    def text(i: int, j: int, v: float) -> str:
        return "" if counts_VxV is None else str(int(counts_VxV[i, j]))

    grid = heatmap(
        p_VxV,
        lambda v: sequential(v, vmax),
        tip,
        cell=26,
        row_labels=lab,
        col_labels=lab,
        text=text,
        label="bigram table",
    )
    what = "counts in the cells, " if counts_VxV is not None else ""
    return (
        grid + f"<p class='note'>Rows: current token; columns: next token; {what}colour: P(next | current). "
        "<code>.</code> is BOS, a name's start (row) and end (column).</p>"
    )


def pca_2d(x_NxC: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``x`` projected on their first two principal components, and the variance share of each."""
    x_NxC = np.asarray(x_NxC, np.float64)
    xc_NxC = x_NxC - x_NxC.mean(axis=0)
    _, s, vt = np.linalg.svd(xc_NxC, full_matrices=False)
    if vt.shape[0] < 2:  # a one-column embedding: pad the second component with zeros
        vt, s = np.vstack([vt, np.zeros_like(vt)]), np.append(s, 0.0)
    share = s[:2] ** 2 / max(float(np.sum(s**2)), 1e-300)
    return xc_NxC @ vt[:2].T, share


def embedding_map(wte_VxC: np.ndarray, tokenizer: Tokenizer, size: float = 420) -> str:
    """Token embeddings projected to 2-D by PCA, each labelled with its token (tooltips: exact coordinates)."""
    xy_Nx2, share = pca_2d(wte_VxC)
    lab = labels(tokenizer)
    lo, hi = xy_Nx2.min(axis=0), xy_Nx2.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    pts = 20 + (xy_Nx2 - lo) / span * (size - 40)
    parts = [f'<rect x="0.5" y="0.5" width="{size - 1:g}" height="{size - 1:g}" fill="none" stroke="#ccc"/>']
    far = np.argsort(-np.linalg.norm(xy_Nx2, axis=1), kind="stable")[:MAX_LABELS]
    named = set(far.tolist()) if len(lab) > MAX_LABELS else set(range(len(lab)))
    for k, ((x, y), name) in enumerate(zip(pts, lab, strict=True)):
        tip = f"{name}: PC1 {xy_Nx2[k, 0]:.4f}, PC2 {xy_Nx2[k, 1]:.4f}"
        parts.append(
            f'<g><title>{esc(tip)}</title><circle cx="{x:.1f}" cy="{size - y:.1f}" r="3" fill="#1f77b4"/>'
            + (
                f'<text x="{x + 4:.1f}" y="{size - y + 4:.1f}" font-size="12">{esc(name[:12])}</text>'
                if k in named
                else ""
            )
            + "</g>"
        )
    cap = f"PCA of wte: PC1 {share[0]:.0%} and PC2 {share[1]:.0%} of the variance"
    if len(lab) > MAX_LABELS:
        cap += f"; the {MAX_LABELS} tokens farthest from the centre are labelled (every point has a tooltip)"
    return f"<figure>{wrap(size, size, ''.join(parts), 'token embeddings')}<figcaption>{esc(cap)}</figcaption></figure>"


def position_similarity(wpe_TxC: np.ndarray) -> str:
    """Cosine similarity between every two position embeddings, as a heatmap."""
    w = np.asarray(wpe_TxC, np.float64)
    unit = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    sim_TxT = unit @ unit.T
    pos = [str(i) for i in range(w.shape[0])]
    grid = heatmap(
        sim_TxT,
        lambda v: diverging(v, 1.0),
        lambda i, j, v: f"cos(wpe[{i}], wpe[{j}]) = {v:.4f}",
        cell=14,
        row_labels=pos,
        col_labels=pos,
        label="position similarity",
    )
    return f"<figure>{grid}<figcaption>cosine similarity of the position embeddings</figcaption></figure>"


def embeddings(params: dict[str, Any], tokenizer: Tokenizer, model: str) -> str:
    """The embeddings section's body for the MLP and the GPT (the bigram has none)."""
    out = embedding_map(params["wte"], tokenizer)
    if model == "gpt":
        out += position_similarity(params["wpe"])
    return out
