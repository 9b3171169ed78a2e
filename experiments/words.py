"""Words instead of names: the smoke test of "LLMs, the Hard Way" (its step 10) end to end, timed.

1. Pre-train microgpt's GPT on grade-1 sentences with words as tokens (``--tokenizer word``, lower-cased as
   the book does): n_layer 2, n_embd 32, n_head 4, block_size 16 (597 tokens, 63,296 parameters), the default
   recipe (Adam 0.01, b1 0.85, b2 0.99, linear decay, one sentence per step) for 5,000 steps. The sentences are
   shuffled with Python's ``random.Random(42)`` and the last 1,000 held out for the held-out NLL.
2. Generate with temperature 0.8 alone, then with top-k 10, then with top-k 10 and top-p 0.9.
3. Fine-tune on the book's 150 questions from the pre-trained run (its tokenizer and architecture), 1,000
   steps at lr 0.001, all questions trained on (the book holds none out), and generate questions.
4. Check the held-out NLL with an evaluator that shares no code with the package: it reads the run's
   params.safetensors and re-splits the corpus itself, then runs the GPT's forward pass in numpy float64.

Each run is ``microgpt_jax.train_run`` into ``--runs`` (default runs/, git-ignored). Writes to ``--out``
(default experiments/results): ``words.md`` (losses, held-out NLL, samples, seconds, and the same run set
against the book's measured speed) and ``words.json`` (the figures unrounded). Regenerate with
``python experiments/words.py`` (the sentences from --data or $MICROGPT_JAX_WORDS_DATA, the questions from
--questions or $MICROGPT_JAX_QUESTIONS_DATA). ``--quick`` runs a handful of steps of a smaller model to exercise
the script (the test suite does) and writes results only when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from microgpt_jax.config import DataConfig, GPTConfig, RunConfig, SampleConfig, TrainConfig
from microgpt_jax.corpus.documents import encode_docs
from microgpt_jax.corpus.load import load_corpus
from microgpt_jax.errors import UserError, exit_status
from microgpt_jax.files import atomic_write_text, refuse_existing
from microgpt_jax.runs.fresh import train_run
from microgpt_jax.runs.load import load_run, sample_model
from microgpt_jax.runs.loop import RunResult
from microgpt_jax.training.evaluation import evaluate

RESULTS = Path(__file__).resolve().parent / "results"
WORDS_ENV = "MICROGPT_JAX_WORDS_DATA"
QUESTIONS_ENV = "MICROGPT_JAX_QUESTIONS_DATA"

MODEL = GPTConfig(n_layer=2, n_embd=32, n_head=4, block_size=16)  # the book's phrases model
QUICK_MODEL = GPTConfig(n_layer=2, n_embd=8, n_head=2, block_size=8)  # --quick: the script's paths, fast
PRETRAIN_STEPS, FINETUNE_STEPS, FINETUNE_LR = 5000, 1000, 0.001
TEMPERATURE = 0.8  # the book's default
SETTINGS = [  # (label, top_k, top_p) of the generations, all at TEMPERATURE
    ("temperature 0.8", 0, 1.0),
    ("temperature 0.8, top-k 10", 10, 1.0),
    ("temperature 0.8, top-k 10, top-p 0.9", 10, 0.9),
]
# the book's own TypeScript (node 20, npx tsx) measured on this project's machine: 252 of its 5,000 steps in 119 s
BOOK_STEPS, BOOK_SECONDS = 252, 119.0
BOOK_LAST_LOSS = 1.76  # the book's loss at step 5,000: one sentence's


# ---- an independent evaluator: numpy and the safetensors file format only, nothing from microgpt_jax ----


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the metadata of a safetensors file, parsed from its bytes (8-byte header length, JSON
    header, raw little-endian data)."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    kinds = {"F32": "<f4", "F64": "<f8"}
    arrays = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        data = raw[8 + n + start : 8 + n + end]
        arrays[name] = np.frombuffer(data, dtype=kinds[info["dtype"]]).reshape(info["shape"]).astype(np.float64)
    return arrays, {k: json.loads(v) if k in ("config", "vocab") else v for k, v in meta.items()}


def held_out_sentences(path: str | os.PathLike, seed: int, val_size: int, lowercase: bool) -> list[str]:
    """The held-out split, made again from the file: non-empty stripped lines (lower-cased), shuffled by
    Python's random.Random(seed), the last ``val_size``."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    docs = [line.lower() if lowercase else line for line in lines if line]
    random.Random(seed).shuffle(docs)
    return docs[len(docs) - val_size :]


def _rmsnorm(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5)


def numpy_logits(p: dict[str, np.ndarray], tokens_BxT: np.ndarray, n_layer: int, n_head: int) -> np.ndarray:
    """microgpt's GPT in numpy: embeddings, rmsnorm, per layer causal attention and a ReLU MLP (pre-norm,
    residual, no biases), then lm_head. Matrices are (nout, nin)."""
    B, T = tokens_BxT.shape
    x = _rmsnorm(p["wte"][tokens_BxT] + p["wpe"][:T])
    C = x.shape[-1]
    D = C // n_head
    causal = np.tril(np.ones((T, T), dtype=bool))
    for i in range(n_layer):
        h = _rmsnorm(x)
        q, k, v = (
            (h @ p[f"layer{i}.attn_w{m}"].T).reshape(B, T, n_head, D).transpose(0, 2, 1, 3) for m in "qkv"
        )  # (B, H, T, D)
        scores = np.where(causal, q @ k.transpose(0, 1, 3, 2) / np.sqrt(D), -np.inf)
        w = np.exp(scores - scores.max(axis=-1, keepdims=True))
        w /= w.sum(axis=-1, keepdims=True)
        attn = (w @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + attn @ p[f"layer{i}.attn_wo"].T
        h = np.maximum(_rmsnorm(x) @ p[f"layer{i}.mlp_fc1"].T, 0.0)
        x = x + h @ p[f"layer{i}.mlp_fc2"].T
    return x @ p["lm_head"].T


def numpy_nll(params_path: str | os.PathLike, docs: list[str]) -> float:
    """Mean negative log-likelihood per predicted token of ``docs`` under the model in ``params_path``: each
    document is [BOS] + its words + [BOS] (BOS = the number of words), cut to block_size + 1 tokens."""
    p, meta = read_safetensors(params_path)
    config, vocab = meta["config"], meta["vocab"]
    words = vocab["vocab"] if isinstance(vocab, dict) else list(vocab)
    split = (lambda d: d.split(" ")) if isinstance(vocab, dict) and vocab["kind"] == "word" else list
    index = {w: i for i, w in enumerate(words)}
    bos, T = len(words), config["block_size"]
    tokens = np.full((len(docs), T + 1), bos, dtype=np.int64)
    n = np.zeros(len(docs), dtype=np.int64)
    for r, doc in enumerate(docs):
        ids = [bos, *(index[w] for w in split(doc)), bos][: T + 1]
        tokens[r, : len(ids)] = ids
        n[r] = len(ids) - 1
    total, count = 0.0, 0
    for s in range(0, len(docs), 256):
        logits = numpy_logits(p, tokens[s : s + 256, :-1], config["n_layer"], config["n_head"])
        logits -= logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        target = tokens[s : s + 256, 1:]
        nll = -np.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
        mask = np.arange(T) < n[s : s + 256, None]
        total += float(nll[mask].sum())
        count += int(mask.sum())
    return total / count


# ---- the runs ----


class _Tee(io.TextIOBase):
    """stdout that is also kept, to read the rate a run prints."""

    def __init__(self, out: Any) -> None:
        self.out, self.kept = out, io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def timed_run(out: Path, *args: Any, **kwargs: Any) -> tuple[RunResult, float, float | None]:
    """``train_run`` with its wall-clock seconds (reading the corpus, compiling, training, evaluating, saving
    and sampling included) and the steps per second it printed after compiling (None when too short)."""
    tee = _Tee(sys.stdout)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(tee):
        result = train_run(out, *args, **kwargs)
    seconds = time.perf_counter() - t0
    rate = re.search(r"\| ([\d,]+) steps/s after compile", tee.kept.getvalue())
    return result, seconds, float(rate.group(1).replace(",", "")) if rate else None


def loss_figures(losses: np.ndarray) -> dict[str, float]:
    """First and last step's loss and the means the acceptance talks about."""
    losses = np.asarray(losses, np.float64)
    return {
        "first": float(losses[0]),
        "last": float(losses[-1]),
        "mean_first_50": float(losses[:50].mean()),
        "mean_last_100": float(losses[-100:].mean()),
        "mean_last_500": float(losses[-500:].mean()),
        "last_500_percentiles_5_50_95": [float(x) for x in np.percentile(losses[-500:], [5, 50, 95])],
        "share_last_500_below_book_last": float(np.mean(losses[-500:] < BOOK_LAST_LOSS)),
    }


def generations(run_dir: Path, num_samples: int, corpus: set[str], starts: set[str]) -> list[dict[str, Any]]:
    """Samples of the run in ``run_dir`` at every setting of SETTINGS (seed 42), with how many are new
    sentences (not in the training corpus) and how many begin like a question."""
    model = load_run(run_dir)
    out = []
    for label, top_k, top_p in SETTINGS:
        sc = SampleConfig(num_samples=num_samples, temperature=TEMPERATURE, top_k=top_k, top_p=top_p, seed=42)
        samples = sample_model(model, sc)
        out.append({
            "setting": label, "top_k": top_k, "top_p": top_p, "samples": samples,
            "new": sum(s not in corpus for s in samples),
            "question_starts": sum(s.split(" ")[0] in starts for s in samples if s),
        })  # fmt: skip
    return out


def _corpus_path(given: str | None, env: str, what: str) -> Path:
    path = given or os.environ.get(env)
    if not path:
        raise UserError(f"where is {what}? pass --{'data' if env == WORDS_ENV else 'questions'} PATH or set {env}")
    return Path(path)


def run_all(args: argparse.Namespace, runs_dir: Path) -> dict[str, Any]:
    """Pre-train, generate, fine-tune, generate, evaluate; every figure of words.md."""
    sentences_path = _corpus_path(args.data, WORDS_ENV, "grade1_sentences.txt")
    questions_path = _corpus_path(args.questions, QUESTIONS_ENV, "questions.txt")
    pre_steps, ft_steps = (args.quick_steps, args.quick_steps) if args.quick else (PRETRAIN_STEPS, FINETUNE_STEPS)
    model = QUICK_MODEL if args.quick else MODEL
    data = DataConfig(path=sentences_path, val_size=args.val_size, tokenizer="word", lowercase=True)
    questions = DataConfig(path=questions_path, val_size=0, lowercase=True)
    samples = SampleConfig(num_samples=args.num_samples, temperature=TEMPERATURE, top_k=10, top_p=0.9)
    # every check before the first run: both corpora read, the questions encodable by the sentences' words
    corpus = load_corpus(data)
    q_corpus = load_corpus(questions, corpus.tokenizer)

    pre, pre_s, pre_rate = timed_run(runs_dir / "words", model, TrainConfig(steps=pre_steps), data, RunConfig(),
                                     samples)  # fmt: skip
    sentences = {s for s in corpus.train_docs + corpus.val_docs}
    q_docs = q_corpus.train_docs
    starts = {q.split(" ")[0] for q in q_docs}
    pre_gen = generations(pre.out, args.num_samples, sentences, starts)

    ft, ft_s, ft_rate = timed_run(runs_dir / "questions", None, TrainConfig(steps=ft_steps, lr=FINETUNE_LR),
                                  questions, RunConfig(), samples, init=pre.out)  # fmt: skip
    ft_gen = generations(ft.out, args.num_samples, set(q_docs), starts)

    # the independent evaluator against the library's val_loss (float32 in JAX, float64 here)
    held_out = held_out_sentences(sentences_path, 42, args.val_size, lowercase=True)
    if held_out != corpus.val_docs:
        raise RuntimeError("the evaluator's held-out split is not the run's")
    numpy_val = numpy_nll(pre.out / "params.safetensors", held_out)
    # adaptation and forgetting: each model on the questions and on the held-out sentences
    qt, qn, _, _ = q_corpus.encoded(model.block_size)
    vt, vn = encode_docs(corpus.val_docs, corpus.tokenizer, model.block_size)
    pre_q = evaluate(pre.params, qt, qn, pre.config)
    ft_q, ft_val = evaluate(ft.params, qt, qn, ft.config), evaluate(ft.params, vt, vn, ft.config)
    import jax

    machine = f"{os.cpu_count()} CPU cores, {platform.machine()}, jax {jax.__version__} on {jax.default_backend()}"
    n_train, n_val = len(corpus.train_docs), len(corpus.val_docs)
    pretrain = {
        "steps": pre_steps,
        "seconds": pre_s,
        "steps_per_s_after_compile": pre_rate,
        "losses": loss_figures(pre.losses),
        "val_nll": pre.val_loss,
        "val_nll_numpy": numpy_val,
        "questions_nll": pre_q,
        "samples": pre_gen,
    }
    finetune = {
        "steps": ft_steps,
        "lr": FINETUNE_LR,
        "seconds": ft_s,
        "steps_per_s_after_compile": ft_rate,
        "losses": loss_figures(ft.losses),
        "questions_nll": ft_q,
        "val_nll": ft_val,
        "samples": ft_gen,
    }
    book = {
        "steps": BOOK_STEPS,
        "seconds": BOOK_SECONDS,
        "steps_per_s": BOOK_STEPS / BOOK_SECONDS,
        "pretrain_seconds_estimate": PRETRAIN_STEPS * BOOK_SECONDS / BOOK_STEPS,
    }
    return {
        "quick": args.quick,
        "machine": machine,
        "sentences": {"path": sentences_path.name, "docs": n_train + n_val, "train": n_train, "held_out": n_val},
        "questions": {"path": questions_path.name, "docs": len(q_docs)},
        "model": {k: getattr(pre.config, k) for k in ("n_layer", "n_embd", "n_head", "block_size")},
        "vocab_size": pre.tokenizer.vocab_size,
        "words": len(pre.tokenizer.vocab),
        "params": int(sum(np.asarray(v).size for v in pre.params.values())),
        "pretrain": pretrain,
        "finetune": finetune,
        "book": book,
    }


def markdown(r: dict[str, Any], command: str) -> str:
    """words.md: every figure from ``r`` (the json)."""
    pre, ft, book = r["pretrain"], r["finetune"], r["book"]
    pl, fl = pre["losses"], ft["losses"]
    p5, p50, p95 = pl["last_500_percentiles_5_50_95"]
    m = r["model"]
    speedup = book["pretrain_seconds_estimate"] / pre["seconds"]
    lines = [
        "# Words instead of names: the book's smoke test",
        "",
        f"Generated by `{command}` (every figure below comes from that run; nothing is typed by hand).",
        'The system of "LLMs, the Hard Way" (github irbull/llms-the-hard-way, its step 10): microgpt\'s GPT with '
        "words as tokens, pre-trained on grade-1 sentences and fine-tuned on questions.",
        "",
        f"- Corpus: {r['sentences']['path']}, {r['sentences']['docs']:,} sentences, lower-cased, shuffled with "
        f"Python's `random.Random(42)`; the last {r['sentences']['held_out']:,} of that order are held out, "
        f"{r['sentences']['train']:,} train (the book trains on all of them, in its own RNG's order).",
        f"- Tokenizer: words split on single spaces, the sorted unique words, BOS last: {r['words']:,} words + BOS "
        f"= **{r['vocab_size']:,} tokens**.",
        f"- Model: n_layer {m['n_layer']}, n_embd {m['n_embd']}, n_head {m['n_head']}, block_size "
        f"{m['block_size']}, init N(0, 0.08): **{r['params']:,} parameters**.",
        "- Recipe: one sentence per step, Adam (lr 0.01, b1 0.85, b2 0.99, eps 1e-8), lr decayed linearly to 0.",
        f"- Machine: {r['machine']}. The cores were shared with other work while it ran (1-minute load average "
        f"{r['load_average_1min']['start']:.1f} at the start, {r['load_average_1min']['end']:.1f} at the end): "
        "read the seconds as rough.",
        "",
        "## Pre-training",
        "",
        "| steps | loss step 1 | loss last step | mean loss, last 500 steps | held-out NLL / token | same, numpy "
        "evaluator | seconds (all in) | steps/s after compile |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {pre['steps']:,} | {pl['first']:.4f} | {pl['last']:.4f} | {pl['mean_last_500']:.4f} | "
        f"{pre['val_nll']:.4f} | {pre['val_nll_numpy']:.4f} | {pre['seconds']:.1f} | "
        f"{_rate(pre['steps_per_s_after_compile'])} |",
        "",
        f"Held-out NLL is the mean negative log-likelihood per predicted token (each word and the closing BOS) "
        f"over the {r['sentences']['held_out']:,} held-out sentences, as `microgpt-jax train` reports `val_loss` "
        f"(float32). The numpy evaluator shares no code with the package: it reads params.safetensors, splits "
        f"the corpus again itself and runs the forward pass in float64; the two differ by "
        f"{abs(pre['val_nll'] - pre['val_nll_numpy']):.1e}.",
        "",
        f"A step's loss is one sentence's, so it is noisy: over the last 500 steps the median is {p50:.2f} and 90% "
        f"lie between {p5:.2f} and {p95:.2f}; {100 * pl['share_last_500_below_book_last']:.1f}% of them are below "
        f"the {BOOK_LAST_LOSS} the book reports for its step 5,000.",
        "",
        "### Against the book's own code",
        "",
        f"The book's TypeScript (node 20, `npx tsx`), measured on this project's machine, ran {book['steps']} of "
        f"its 5,000 steps in {book['seconds']:.0f} s: {book['steps_per_s']:.1f} steps/s, so about "
        f"{book['pretrain_seconds_estimate'] / 60:.0f} minutes for the run. This run took {pre['seconds']:.1f} s "
        f"for {pre['steps']:,} steps, everything included (reading the corpus, compiling, training, the held-out "
        f"evaluation, saving, samples): **{speedup:,.0f}x less time** than the book's run"
        + (
            f"; after compiling, {_rate(pre['steps_per_s_after_compile'])} steps/s"
            if pre["steps_per_s_after_compile"]
            else ""
        )
        + (
            f", {pre['steps_per_s_after_compile'] / book['steps_per_s']:,.0f}x the book's rate per step"
            if pre["steps_per_s_after_compile"]
            else ""
        )
        + (" (a --quick run: not comparable)" if r["quick"] else "")
        + ". The book reports loss 6.39 at step 1 and 1.76 at step 5,000 (one sentence's loss each).",
        "",
        "### Samples of the pre-trained model (seed 42)",
        "",
    ]
    lines += _samples(pre["samples"], "sentences of the corpus")
    lines += [
        "## Fine-tuning on questions",
        "",
        f"From the pre-trained run (its tokenizer and architecture), {r['questions']['docs']} questions "
        f"({r['questions']['path']}, every word in the sentences' vocabulary), all trained on as the book does, "
        f"{ft['steps']:,} steps at lr {ft['lr']} (decayed linearly).",
        "",
        "| loss step 1 | loss last step | mean loss, first 50 steps | mean loss, last 100 steps | seconds (all in) |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {fl['first']:.4f} | {fl['last']:.4f} | {fl['mean_first_50']:.4f} | {fl['mean_last_100']:.4f} | "
        f"{ft['seconds']:.1f} |",
        "",
        f"NLL per token on the questions: {pre['questions_nll']:.4f} for the pre-trained model, "
        f"{ft['questions_nll']:.4f} after fine-tuning; on the held-out sentences {pre['val_nll']:.4f} before, "
        f"{ft['val_nll']:.4f} after (what fine-tuning costs the sentences). The book reports a loss of about 2.5 at "
        "the start and about 1.0 at the end.",
        "",
        "### Samples of the fine-tuned model (seed 42)",
        "",
    ]
    lines += _samples(ft["samples"], "questions of questions.txt")
    return "\n".join(lines).rstrip() + "\n"


def _rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:,.0f}"


def _samples(gens: list[dict[str, Any]], seen: str) -> list[str]:
    lines = []
    for g in gens:
        n = len(g["samples"])
        lines += [
            f"{g['setting']}: {g['new']} of {n} are not {seen}; {g['question_starts']} of {n} begin with a "
            "question's first word.",
            "",
        ]
        lines += [f"- {s or '(empty)'}" for s in g["samples"]]
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run everything, then write words.md and words.json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--data", help=f"grade1_sentences.txt (default: ${WORDS_ENV})")
    p.add_argument("--questions", help=f"questions.txt (default: ${QUESTIONS_ENV})")
    p.add_argument("--out", help="where the results go (default experiments/results; with --quick, nowhere)")
    p.add_argument("--runs", default="runs", help="where the run directories go (default runs/; --quick: a temp dir)")
    p.add_argument("--val-size", type=int, default=1000, help="hold out the last N sentences (default 1000)")
    p.add_argument("--num-samples", type=int, default=10, help="samples per setting (default 10)")
    p.add_argument("--quick", action="store_true", help="a handful of steps per run: checks the script, not models")
    p.add_argument("--quick-steps", type=int, default=20, help=argparse.SUPPRESS)
    p.add_argument("--overwrite", action="store_true", help="replace results already in the folder")
    args = p.parse_args(argv)

    out = Path(args.out) if args.out else (None if args.quick else RESULTS)
    if not args.overwrite:
        refuse_existing(out, ("words.md", "words.json"), "pass --overwrite to replace them, or --out another folder")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="words-runs-") as tmp:
        results = run_all(args, Path(tmp) if args.quick else Path(args.runs))
    if out is None:
        print("--quick: no results written (pass --out DIR to keep them)")
        return 0
    command = "python experiments/words.py" + (" --quick" if args.quick else "")
    command += f" --val-size {args.val_size}" if args.val_size != 1000 else ""
    results["command"] = command
    results["load_average_1min"] = {"start": load_before, "end": os.getloadavg()[0]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "words.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "words.md", markdown(results, command))
    print(f"wrote {out}/words.md, words.json")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
