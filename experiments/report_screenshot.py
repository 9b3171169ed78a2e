"""The README's picture of ``microgpt-jax report``: train the default run (or take a run directory), write its
report, time that command (a fresh process, the JAX import included), and take a headless-Chromium screenshot
of the page to ``docs/report.png`` (reduced to a palette of colours, so it stays small).

    python experiments/report_screenshot.py --data /path/to/names.txt        # trains runs/ in a temp dir
    python experiments/report_screenshot.py --run runs/x                     # an existing run

Needs ``chromium`` (Debian: apt-get install chromium). The corpus comes from --data or $MICROGPT_JAX_DATA.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: str | Path = ROOT) -> float:
    """Run ``python -m microgpt_jax ARGS`` in a fresh process in ``cwd``; its wall time in seconds."""
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-m", "microgpt_jax", *args], check=True, cwd=cwd, env=env, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - t0


def screenshot(page: Path, png: Path, width: int, height: int, colours: int) -> None:
    """The top ``width`` x ``height`` pixels of ``page`` in headless Chromium, saved as a palette PNG."""
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp}",
             f"--window-size={width},{height}", f"--screenshot={raw}", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        image = Image.open(raw).convert("RGB").quantize(colors=colours, method=Image.Quantize.FASTOCTREE)
        png.parent.mkdir(parents=True, exist_ok=True)
        image.save(png, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="an existing run directory (default: train the default run)")
    parser.add_argument("--data", default=os.environ.get("MICROGPT_JAX_DATA"), help="names.txt for a new run")
    parser.add_argument("--out", default=str(ROOT / "docs" / "report.png"), help="the screenshot (PNG)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=4300)
    parser.add_argument("--colours", type=int, default=256, help="palette size of the PNG")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run).resolve() if args.run else Path("runs/x")  # a new run: runs/x in the temp dir
        if not args.run:
            if not args.data:
                raise SystemExit("error: pass --data path/to/names.txt (or set MICROGPT_JAX_DATA), or --run DIR")
            data = str(Path(args.data).resolve())
            print(f"train: {cli('train', '--out', str(run_dir), '--data', data, cwd=tmp):.1f} s")
        page = Path(tmp) / "report.html"
        seconds = cli("report", str(run_dir), "--out", str(page), cwd=tmp)
        size = page.stat().st_size / 1e6
        print(f"report: {seconds:.2f} s wall (a fresh process, the JAX import included), {size:.2f} MB")
        screenshot(page, Path(args.out), args.width, args.height, args.colours)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e3:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
