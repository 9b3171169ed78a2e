"""The guide's progression as commands: ``train --step N`` (0 to 5), Step 1's hand-written gradient in training,
and ``gradcheck``. The steps' numbers are checked against the guide's claims on the vendored first 1000 names."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import read_metrics
from model.test_bigram import guide_online_counting

from microgpt_jax.cli.commands import train_configs
from microgpt_jax.cli.parser import build_parser
from microgpt_jax.cli.program import main
from microgpt_jax.config import GUIDE_STEPS, DataConfig, GPTConfig, TrainConfig, step_configs
from microgpt_jax.errors import UserError
from microgpt_jax.model.init import init_params
from microgpt_jax.model.registry import num_params
from microgpt_jax.runs import fresh
from microgpt_jax.runs.guard import RunGuard
from microgpt_jax.runs.load import load_run
from microgpt_jax.training import gradcheck, sweep


@pytest.fixture
def x64_restored():
    """A ``--x64`` run switches float64 on for the whole process: put it back after the test."""
    was = bool(jax.config.jax_enable_x64)
    yield
    jax.config.update("jax_enable_x64", was)


def guide_flags(ref_docs_path: Path) -> list[str]:
    """The vendored first 1000 training names in the original's order, all for training."""
    return ["--data", str(ref_docs_path), "--no-shuffle", "--val-size", "0", "--num-samples", "1"]


def losses_of(out: Path) -> np.ndarray:
    return np.array([m["loss"] for m in read_metrics(out) if "loss" in m])


def code_of(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return int(e.code)


def test_param_counts_per_step() -> None:
    counts = {}
    for step in GUIDE_STEPS:
        config = step_configs(step)[0]
        shapes = jax.eval_shape(lambda key, c=config: init_params(key, c), jax.random.key(0))
        counts[step] = num_params(shapes)
    # the guide's text says 2,480 for Steps 1 and 2; its shapes (and its own later table) make 3,184
    assert counts == {0: 729, 1: 3184, 2: 3184, 3: 4192, 4: 4192, 5: 4192}
    assert step_configs(3)[0].head_dim == 16 and step_configs(4)[0].head_dim == 4


def test_step_1_and_step_2_train_the_same_in_float64(ref_docs_path, tmp_path, capsys, x64_restored) -> None:
    """The guide: Steps 1 (hand-written gradient) and 2 (autograd) give identical results."""
    losses = {}
    for step in (1, 2):
        out = tmp_path / f"step{step}"
        assert main(["train", "--step", str(step), "--out", str(out), *guide_flags(ref_docs_path), "--x64"]) == 0
        assert "num params: 3184" in capsys.readouterr().out
        info = json.loads((out / "config.json").read_text())
        assert info["step"] == step and info["model"]["model"] == "mlp"
        assert info["train"]["grad"] == ("analytic" if step == 1 else "autodiff") and info["train"]["x64"]
        losses[step] = losses_of(out)
    assert losses[1].shape == (1000,)
    diff = float(np.max(np.abs(losses[1] - losses[2])))
    print(f"Step 1 vs Step 2, float64, 1000 steps: max |loss difference| = {diff:.3e}")
    assert diff <= 1e-10
    assert losses[1][-100:].mean() < losses[1][:100].mean() - 0.5  # and it learns


def test_step_0_run_is_the_guides_online_counting(ref_docs_path, tmp_path, capsys, x64_restored) -> None:
    """metrics.jsonl of ``train --step 0`` holds the guide's 1000 per-step losses (scored before counting)."""
    out = tmp_path / "step0"
    assert main(["train", "--step", "0", "--out", str(out), *guide_flags(ref_docs_path), "--x64"]) == 0
    printed = capsys.readouterr().out
    assert "num params: 729 (counted online, one document per step, add-1 smoothed)" in printed
    assert "temperature 1.0" in printed  # the guide samples its table as it is
    docs = ref_docs_path.read_text().split()
    want, counts = guide_online_counting(docs, "abcdefghijklmnopqrstuvwxyz", 1000)
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == list(range(1000))  # one line per step; no held-out set here
    np.testing.assert_allclose(losses_of(out), want, rtol=0, atol=1e-12)
    # the model saved is the table of the 1000 names' counts, add-one smoothed
    loaded = load_run(out)
    table = np.zeros((27, 27))
    for (i, j), c in counts.items():
        table[i, j] = c
    want_logp = np.log((table + 1) / (table + 1).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(loaded.params["wte"], want_logp, rtol=0, atol=1e-12)
    assert json.loads((out / "config.json").read_text())["train"]["count"] == "online"


def test_step_3_is_its_flags(ref_docs_path, tmp_path, capsys) -> None:
    """``--step 3`` is ``--n-head 1 --optimizer sgd --lr 0.1``: the same files but config.json's step."""
    common = [*guide_flags(ref_docs_path), "--steps", "20"]
    assert main(["train", "--step", "3", "--out", str(tmp_path / "step"), *common]) == 0
    assert "num params: 4192" in capsys.readouterr().out
    flags = ["--n-head", "1", "--optimizer", "sgd", "--lr", "0.1"]
    assert main(["train", "--out", str(tmp_path / "flags"), *flags, *common]) == 0
    same_run(tmp_path / "step", tmp_path / "flags", 3)


def test_step_5_is_the_default(tiny_corpus, tmp_path, capsys) -> None:
    """``--step 5`` is the default run, bit for bit (test_cli's flags: its compiled programs are reused)."""
    common = ["--data", str(tiny_corpus), "--val-size", "10", "--steps", "30", "--num-samples", "5"]
    assert main(["train", "--step", "5", "--out", str(tmp_path / "step"), *common]) == 0
    assert main(["train", "--out", str(tmp_path / "flags"), *common]) == 0
    same_run(tmp_path / "step", tmp_path / "flags", 5)


def same_run(by_step: Path, by_flags: Path, step: int) -> None:
    for name in ("metrics.jsonl", "params.safetensors"):
        assert (by_step / name).read_bytes() == (by_flags / name).read_bytes(), name
    step_info, flags_info = (json.loads((d / "config.json").read_text()) for d in (by_step, by_flags))
    assert step_info.pop("step") == step and flags_info.pop("step") is None
    assert step_info == flags_info


def configs_of(*argv: str):
    args = vars(build_parser().parse_args(["train", "--out", "unused", *argv]))
    del args["command"]
    return train_configs(args)


def test_flags_beside_a_step_override_it() -> None:
    model, train, _, _, sample = configs_of("--step", "1", "--lr", "0.5", "--steps", "20")
    assert (model.model, train.optimizer, train.lr, train.steps, train.grad) == ("mlp", "sgd", 0.5, 20, "analytic")
    assert configs_of("--step", "1", "--grad", "autodiff") == configs_of("--step", "2")
    model, train, *_ = configs_of("--step", "3", "--n-head", "2", "--n-layer", "2")
    assert (model.n_head, model.n_layer, train.optimizer, train.lr) == (2, 2, "sgd", 0.1)
    # a field the step sets keeps the step's value unless given: Step 5's lr stays with another optimizer
    assert configs_of("--step", "5", "--optimizer", "sgd")[1].lr == 0.01
    model, train, _, _, sample = configs_of("--step", "0", "--steps", "50", "--temperature", "0.5")
    assert (model.model, train.count, train.steps, sample.temperature) == ("bigram", "online", 50, 0.5)
    assert configs_of("--step", "0")[4].temperature == 1.0
    # counting all at once takes no steps; online counting does
    with pytest.raises(UserError, match=r"drop --steps \(or count one document per step: --count online\)"):
        configs_of("--step", "0", "--count", "all", "--steps", "50")
    assert configs_of("--model", "bigram", "--count", "online", "--steps", "50")[1].steps == 50
    with pytest.raises(UserError, match="--model gpt does not use --count"):
        configs_of("--step", "5", "--count", "online")


def test_the_hand_written_gradient_is_the_mlps_only(tiny_corpus, tmp_path, capsys) -> None:
    common = ["--data", str(tiny_corpus), "--val-size", "5", "--out", str(tmp_path / "run")]
    for flags, says in [
        (["--model", "gpt", "--grad", "analytic"], "--model gpt has no hand-written gradient (only mlp has"),
        (["--step", "1", "--model", "gpt"], "--model gpt has no hand-written gradient"),
        (["--model", "bigram", "--grad", "analytic"], "drop --grad"),
        (["--grad", "numerical"], "--grad: invalid choice 'numerical': use one of autodiff, analytic"),
    ]:
        assert code_of(["train", *common, *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="no hand-written gradient"):
        fresh.train_run(
            tmp_path / "lib", GPTConfig(), TrainConfig(grad="analytic"), DataConfig(path=tiny_corpus, val_size=5)
        )
    assert not (tmp_path / "lib").exists()
    # a sweep trains with jax.grad and says so
    with pytest.raises(UserError, match=r"a sweep trains with jax\.grad"):
        sweep.grid_members(GPTConfig(model="mlp"), TrainConfig(grad="analytic"), {"lr": [0.1]})


def test_resume_of_a_step_run(ref_docs_path, tmp_path, monkeypatch, capsys) -> None:
    """A Step 1 run (hand-written gradient) stopped at step 40 and resumed is the uninterrupted run, bit for bit;
    config.json keeps its step, and a different --step beside --resume is refused."""
    data = ["--data", str(ref_docs_path), "--no-shuffle", "--val-size", "5"]
    flags = ["--step", "1", *data, "--steps", "60", "--ckpt-every", "20"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", "--out", str(full), *flags, "--num-samples", "2"]) == 0
    after_chunk = RunGuard.after_chunk

    def interrupted(self, report):
        if report.end == 40:
            signal.raise_signal(signal.SIGTERM)
        return after_chunk(self, report)

    monkeypatch.setattr(RunGuard, "after_chunk", interrupted)
    assert main(["train", "--out", str(cut), *flags, "--num-samples", "2"]) == 128 + signal.SIGTERM
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["train", "--resume", str(cut), "--step", "2"]) == 2
    assert "--step 2 conflicts with the run's saved --step 1" in capsys.readouterr().err
    assert main(["train", "--resume", str(cut), "--step", "1"]) == 0
    assert "resuming" in capsys.readouterr().out
    for name in ("metrics.jsonl", "params.safetensors", "config.json"):
        assert (cut / name).read_bytes() == (full / name).read_bytes(), name
    assert json.loads((cut / "config.json").read_text())["step"] == 1


YUHENG = "gradient check | loss_n 3.298234 | loss_a 3.298234 | max diff 0.00000000"


def report_figures(lines: list[str]) -> tuple[float, float]:
    """The two max differences ``gradcheck`` prints after the guide's line."""
    return tuple(float(line.split("max diff ")[1].split()[0]) for line in lines[3:5])  # type: ignore[return-value]


def test_gradcheck_command(ref_docs_path, capsys) -> None:
    data = ["--data", str(ref_docs_path), "--no-shuffle", "--val-size", "0"]
    assert main(["gradcheck", *data]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["training doc 0: yuheng (7 predicted tokens)", "num params: 3184", YUHENG]
    assert lines[3].startswith("numerical vs analytic: max diff ") and lines[3].endswith("tolerance 0.0001): ok")
    assert lines[4].startswith("analytic vs jax.grad: max diff ") and lines[4].endswith("(tolerance 1e-12): ok")
    numerical, autodiff = report_figures(lines)
    assert 0 < numerical <= 1e-6 and autodiff <= 1e-12  # the guide expects about 1e-7 or smaller
    # Step 2's MLP is Step 1's; another document is another check
    assert main(["gradcheck", "--step", "2", *data]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert main(["gradcheck", "--doc", "2", *data]) == 0  # as long as yuheng: the same compiled check
    assert capsys.readouterr().out.splitlines()[0] == "training doc 2: xavien (7 predicted tokens)"
    print("\n".join(lines))


def test_gradcheck_on_names_checks_yuheng(names_path, capsys) -> None:
    assert main(["gradcheck", "--data", str(names_path)]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == ["training doc 0: yuheng (7 predicted tokens)",
                                                        "num params: 3184", YUHENG]  # fmt: skip


@pytest.fixture
def wrong_gradient(monkeypatch):
    """Replace the hand-written gradient inside the check by one off by ``gradcheck.WRONG_BY`` in one entry."""
    analytic = gradcheck.analytic_value_and_grad

    def wrong(params, tokens_BxT1, n_B):
        loss, grads = analytic(params, tokens_BxT1, n_B)
        return loss, {**grads, "mlp_fc1": grads["mlp_fc1"].at[3, 5].add(wrong.by)}

    wrong.by = 0.0
    monkeypatch.setattr(gradcheck, "analytic_value_and_grad", wrong)
    gradcheck._gradient_check.clear_cache()  # compiled with the right one, maybe
    yield wrong
    monkeypatch.undo()
    gradcheck._gradient_check.clear_cache()  # compiled with the wrong one


@pytest.mark.parametrize(("by", "failed"), [(1e-3, ("numerical", "jax.grad")), (1e-9, ("jax.grad",))])
def test_gradcheck_exits_1_out_of_tolerance(ref_docs_path, capsys, wrong_gradient, by, failed) -> None:
    wrong_gradient.by = by
    assert main(["gradcheck", "--data", str(ref_docs_path), "--no-shuffle", "--val-size", "0"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    numerical, autodiff = report_figures(lines)
    assert math.isclose(autodiff, by, rel_tol=1e-3)  # the one entry changed
    assert (numerical > 1e-4) == ("numerical" in failed)
    assert lines[3].endswith("OUT OF TOLERANCE") == ("numerical" in failed)
    assert lines[4].endswith("OUT OF TOLERANCE")
    assert captured.err == "error: the gradient check is out of tolerance\n"


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--step", "3"], "the gradient check is of the MLP's hand-written gradient (Steps 1 and 2), not --model gpt"),
        (["--step", "0"], "not --model bigram"),
        (["--doc", "1000"], "--doc 1000: there are 1000 training documents: pick one of 0..999"),
        (["--doc", "-1"], "--doc must be a whole number >= 0"),
        (["--eps", "0"], "--eps must be a finite number > 0"),
    ],
)
def test_gradcheck_bad_inputs_are_one_line(ref_docs_path, capsys, flags, says) -> None:
    assert code_of(["gradcheck", "--data", str(ref_docs_path), "--no-shuffle", "--val-size", "0", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
