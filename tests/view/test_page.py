"""The report page: its numbers against the library, every model and tokenizer, sweeps, and bad input."""

from __future__ import annotations

import fcntl
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from microgpt_jax.cli.program import main
from microgpt_jax.model.bigram import count_bigrams
from microgpt_jax.model.registry import forward
from microgpt_jax.runs.load import load_run
from microgpt_jax.runs.processes import read_spec
from microgpt_jax.view.page import report
from microgpt_jax.view.probe import logits_and_attention, probe_run
from microgpt_jax.view.scoring import score

SMALL = ["--val-size", "50", "--num-samples", "3"]
GPT = ["--n-embd", "8", "--n-head", "2", "--n-layer", "2", "--steps", "30"]
SECTIONS = {
    "gpt": ["card", "curves", "parameters", "embeddings", "probe", "attention", "samples"],
    "mlp": ["card", "curves", "parameters", "embeddings", "probe", "samples", "gradcheck"],
    "bigram": ["card", "curves", "parameters", "probe", "samples"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ref_docs_path: Path) -> dict[str, Path]:
    """Tiny runs of each model on the first 1000 names, and one on a few sentences with the word tokenizer."""
    out = tmp_path_factory.mktemp("report")
    data = ["--data", str(ref_docs_path), *SMALL]
    assert main(["train", "--out", str(out / "gpt"), *data, *GPT]) == 0
    assert main(["train", "--out", str(out / "gpt2"), *data, *GPT, "--lr", "0.003"]) == 0
    assert main(["train", "--out", str(out / "mlp"), *data, "--step", "1", "--steps", "20", "--n-embd", "4"]) == 0
    assert main(["train", "--out", str(out / "bigram"), *data, "--step", "0", "--steps", "200"]) == 0
    words = out / "words.txt"
    words.write_text("\n".join(["the cat sat", "a dog ran", "the dog sat", "a cat ran", "the sun is up"] * 20))
    w = ["--data", str(words), "--tokenizer", "word", "--val-size", "5", "--num-samples", "3"]
    assert main(["train", "--out", str(out / "words"), *w, "--n-embd", "8", "--n-head", "2", "--steps", "20"]) == 0
    return {p.name: p for p in out.iterdir() if p.is_dir()}


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', page)


@pytest.mark.parametrize("model", ["gpt", "mlp", "bigram", "words"])
def test_every_model_has_its_sections_and_nothing_is_fetched(runs, model):
    page = report(runs[model]).html
    want = SECTIONS["gpt" if model == "words" else model]
    assert section_ids(page) == [f"{s}-0" for s in want]
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(https?:|//)', page)  # only inline images and in-page links
    assert "<ul class='notes'>" not in page  # a run read whole has no notes


def test_probe_nll_equals_score_and_attention_rows_sum_to_one(runs):
    m = load_run(runs["gpt"])
    page = report(runs["gpt"], probe="emma").html
    shown = float(re.search(r'class="probe-nll" data-nll="([^"]+)"', page).group(1))
    assert shown == pytest.approx(score(m.params, m.config, m.tokenizer, ["emma"])[0]["nll"], rel=1e-5)
    result = probe_run(m.params, m.config, m.tokenizer, "emma")
    w_LxHxTxT = result["attention_LxHxTxT"]
    assert w_LxHxTxT.shape == (2, 2, 5, 5)
    np.testing.assert_allclose(w_LxHxTxT.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.triu(w_LxHxTxT, k=1) == 0)  # causal: nothing from the future
    assert page.count('<figure class="attn"') == 4  # every layer and head
    # the probe's forward (numpy, recording attention) is the model's, for every model
    for name in ("gpt", "mlp", "bigram"):
        m = load_run(runs[name])
        tokens = np.asarray(result["ids"][:-1])
        want = np.asarray(forward(m.params, tokens[None], m.config)[0])
        np.testing.assert_allclose(logits_and_attention(m.params, tokens, m.config)[0], want, rtol=1e-5, atol=1e-5)
        (scored,) = score(m.params, m.config, m.tokenizer, ["emma"])
        assert probe_run(m.params, m.config, m.tokenizer, "emma")["nll"] == pytest.approx(scored["nll"], rel=1e-5)


def test_heatmaps_hold_the_parameters(runs):
    m = load_run(runs["gpt"])
    page = report(runs["gpt"]).html
    cells = re.findall(r"<title>([\w.]+)\[(\d+), (\d+)\] = ([-0-9.e]+)</title>", page)
    seen = {}
    for name, i, j, v in cells:
        seen.setdefault(name, {})[(int(i), int(j))] = float(v)
    assert set(seen) == set(m.params)
    for name, w in m.params.items():
        got = np.array([[seen[name][(i, j)] for j in range(w.shape[1])] for i in range(w.shape[0])])
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-9)
        norm = float(re.search(rf'data-name="{re.escape(name)}" data-norm="([^"]+)"', page).group(1))
        assert norm == pytest.approx(float(np.linalg.norm(np.asarray(w, np.float64))), rel=1e-6)


def test_bigram_grid_counts_and_mlp_gradient_check(runs, ref_docs_path):
    page = report(runs["bigram"]).html
    spec = read_spec(runs["bigram"])
    from microgpt_jax.corpus.load import load_corpus

    corpus = load_corpus(spec.data, spec.tokenizer)
    tok, n, _, _ = corpus.encoded(spec.model.block_size)
    counts = count_bigrams(tok[:200], n[:200], spec.model.vocab_size)  # 200 steps, one document each
    a = spec.tokenizer.encode("a")[0]
    assert f"a → n: count {counts[a, spec.tokenizer.encode('n')[0]]}, p = " in page
    assert "bigram held-out" in page and "uniform ln(27)" in page
    page = report(runs["mlp"]).html
    diff = float(re.search(r'data-max-diff="([^"]+)"', page).group(1))
    assert diff < 1e-4  # numerical against the hand-written gradient, float64


def test_several_runs_are_overlaid_with_their_differences(runs):
    page = report(runs["gpt"], runs["gpt2"]).html
    assert section_ids(page)[0] == "compare-0"
    table = page.split('id="compare-0"')[1].split("</section>")[0]
    assert "train.lr" in table and "0.003" in table and "model.n_embd" not in table


def test_sweep_directory(tmp_path):
    rows = [{"id": i, "lr": lr, "n_embd": 8, "optimizer": "adam", "train_loss": 2.5 - i / 10,
             "val_loss": 2.6 - i / 10, "diverged": False, "seconds": 1.0, "group": 0}
            for i, lr in enumerate((0.001, 0.01, 0.1))]  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(rows))
    np.savez(tmp_path / "losses.npz", **{f"member{i}": np.linspace(3, 2, 20) for i in range(3)})
    page = report(tmp_path).html
    assert section_ids(page) == ["sweep-0"]
    assert "val_loss vs lr" in page and "member 2" in page


def test_report_object_saves_and_shows_in_jupyter(runs, tmp_path):
    r = report(runs["bigram"])
    assert r.save(tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert 'id="card-0"' in r._repr_html_()


def _cli_one_line_error(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


def test_bad_input_is_one_line_or_a_note(runs, tmp_path, capsys):
    _cli_one_line_error(["report", str(tmp_path), "--out", str(tmp_path / "r.html")], capsys)  # not a run
    _cli_one_line_error(["report", str(tmp_path / "absent")], capsys)
    bad_config = tmp_path / "badconfig"
    shutil.copytree(runs["gpt"], bad_config)
    (bad_config / "config.json").write_text("{not json")
    _cli_one_line_error(["report", str(bad_config)], capsys)
    _cli_one_line_error(["report", str(runs["gpt"]), "--probe", "Emma", "--out", str(tmp_path / "r.html")], capsys)
    _cli_one_line_error(["report", str(runs["gpt"]), "--out", str(runs["gpt"] / "report.html")], capsys)
    assert not (runs["gpt"] / "report.html").exists()

    damaged = tmp_path / "damaged"
    shutil.copytree(runs["gpt"], damaged)
    with open(damaged / "metrics.jsonl", "a") as f:
        f.write('{"step": 3\n\x00garbage\n')
    (damaged / "params.safetensors").write_bytes(b"not a safetensors file")
    page = report(damaged).html
    assert "2 lines of metrics.jsonl could not be read" in page
    assert "the parameters could not be read" in page
    assert section_ids(page) == ["card-0", "curves-0"]

    unfinished = tmp_path / "unfinished"
    assert main(["train", "--out", str(unfinished), "--data", str(read_spec(runs["gpt"]).data.path), *SMALL,
                 *GPT, "--ckpt-every", "10"]) == 0  # fmt: skip
    (unfinished / "params.safetensors").unlink()
    with open(unfinished / ".lock", "a") as lock:  # a training process holds the lock
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        assert main(["report", str(unfinished), "--out", str(tmp_path / "u.html")]) == 0
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    page = (tmp_path / "u.html").read_text()
    assert "still training" in page and "checkpoint at step 30 of 30" in page
    assert "probe-0" in section_ids(page)
    capsys.readouterr()


def test_default_output_is_beside_the_run(runs, capsys):
    assert main(["report", str(runs["bigram"])]) == 0
    path = Path(str(runs["bigram"].resolve()) + ".html")
    assert path.is_file() and str(path) in capsys.readouterr().out
    assert load_run(runs["bigram"])  # the run directory itself is untouched


@pytest.mark.slow
def test_page_in_headless_chromium(runs, tmp_path):
    """The page as a browser shows it: no console errors, every section (and chart) with a size; the screenshot
    is kept in pytest's temporary directory (its path is printed)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By

    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    page = tmp_path / "report.html"
    report(runs["gpt"], runs["gpt2"]).save(page)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingOptions", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_bin))
    try:
        driver.get(page.as_uri())
        sections = driver.find_elements(By.CSS_SELECTOR, "section")
        ids = [s.get_attribute("id") for s in sections]
        assert ids == section_ids(page.read_text())
        assert {i.split("-")[0] for i in ids} == {"compare", *SECTIONS["gpt"]}
        for s in sections:
            assert s.size["width"] > 0 and s.size["height"] > 0, s.get_attribute("id")
        charts = driver.find_elements(By.CSS_SELECTOR, "section svg")
        visible = [c for c in charts if c.is_displayed()]
        assert visible and all(c.size["width"] > 0 and c.size["height"] > 0 for c in visible)
        # the log-scale checkbox swaps the linear chart for the log one (CSS only)
        lin, log = (driver.find_element(By.CSS_SELECTOR, f"#curves-0 .{c}") for c in ("lin", "log"))
        assert lin.is_displayed() and not log.is_displayed()
        driver.find_element(By.CSS_SELECTOR, "label[for=logx-0]").click()
        assert log.is_displayed() and not lin.is_displayed()
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(height), 16000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
    finally:
        driver.quit()


def test_a_run_whose_corpus_is_gone_has_a_note_and_no_bigram_line(tmp_path, ref_docs_path, capsys):
    corpus = tmp_path / "names.txt"
    corpus.write_bytes(ref_docs_path.read_bytes())
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data", str(corpus), "--val-size", "50", "--model", "bigram"]) == 0
    corpus.unlink()
    page = report(out).html
    assert "is not readable here" in page and "bigram held-out" not in page
    assert "corpus unknown" in page and "probe-0" in section_ids(page)  # the probe falls back on a sample
    capsys.readouterr()


def test_report_replaces_its_own_page_but_no_other_file_unasked(runs, tmp_path, capsys):
    page = tmp_path / "page.html"
    assert main(["report", str(runs["gpt"]), "--out", str(page)]) == 0
    assert main(["report", str(runs["gpt2"]), "--out", str(page)]) == 0  # a page report wrote: replaced
    assert str(runs["gpt2"].name) in page.read_text()
    notes = tmp_path / "notes.html"
    notes.write_text("<html>my notes</html>")
    err = _cli_one_line_error(["report", str(runs["gpt"]), "--out", str(notes)], capsys)
    assert "--overwrite" in err and notes.read_text() == "<html>my notes</html>"
    link = tmp_path / "link.html"
    link.symlink_to(page)  # a link to a page is not followed: refused too
    _cli_one_line_error(["report", str(runs["gpt"]), "--out", str(link)], capsys)
    assert main(["report", str(runs["gpt"]), "--out", str(notes), "--overwrite"]) == 0
    assert "my notes" not in notes.read_text()
