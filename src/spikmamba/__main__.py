"""``python -m spikmamba`` (and ``torchrun -m spikmamba``) runs the ``spikmamba`` command."""
import sys

from .cli import run

sys.exit(run())
