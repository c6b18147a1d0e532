"""`python -m experiments.gradients` in a checkout: the command `dst-jax gradients`, whose code is
`dst_jax.experiments.gradients`."""

import sys

from dst_jax.experiments import gradients as _command

if __name__ == "__main__":
    sys.exit(_command.main())
# Imported, this name is the command's module itself, so its functions can be used and patched.
sys.modules[__name__] = _command
