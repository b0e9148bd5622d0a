"""``python -m spmn.cli``: the same as the ``spmn`` command."""
import sys

from .main import main

sys.exit(main())
