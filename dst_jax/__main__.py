"""`python -m dst_jax COMMAND ...`: the `dst-jax` command (`dst_jax.cli`)."""

import sys

from dst_jax.cli import main

sys.exit(main())
