"""See a run: one self-contained HTML page per run or sweep (``microgpt_jax.report``), and text scored token by
token (``microgpt_jax.score``).

    page = microgpt_jax.report("runs/x")   # shows inline in Jupyter
    page.save("runs/x.html")
"""
