"""``python -m microgpt_jax`` runs the command line."""

import sys

from microgpt_jax.cli import main

sys.exit(main())
