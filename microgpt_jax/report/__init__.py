"""See a run: one self-contained HTML page per run or sweep (``report``), and text scored token by token
(``score``).

    page = microgpt_jax.report("runs/x")   # shows inline in Jupyter
    page.save("runs/x/report.html")
"""

from microgpt_jax.report.page import Report, report
from microgpt_jax.report.score import score

__all__ = ["Report", "report", "score"]
