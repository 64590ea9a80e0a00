"""``python -m rmft_theory.cli`` is the ``rmft`` command."""

import sys

from rmft_theory.cli import main

sys.exit(main())
