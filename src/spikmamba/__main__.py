"""``python -m spikmamba`` (and ``torchrun -m spikmamba``) runs the ``spikmamba`` command."""
import sys

from .cli import main

sys.exit(main())
