"""``evalkit`` with the test-only ``slowfake`` adapter registered (for subprocess and torchrun tests)."""

import sys

import tests.fake_adapter  # noqa: F401  (registers slowfake)
from evalkit.cli import main

sys.exit(main(sys.argv[1:]))
