"""``python -m microgpt_jax`` runs the command line."""

import sys

from microgpt_jax.cli.program import main

sys.exit(main())
