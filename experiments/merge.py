"""`python -m experiments.merge` in a checkout: the command `dst-jax merge`, whose code is
`dst_jax.experiments.merge`."""

import sys

from dst_jax.experiments import merge as _command

if __name__ == "__main__":
    sys.exit(_command.main())
# Imported, this name is the command's module itself, so its functions can be used and patched.
sys.modules[__name__] = _command
