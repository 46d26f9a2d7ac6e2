"""`python -m srp_bundle.cli`: the same as the `srp-bundle` console script."""

import sys

from srp_bundle.cli import main

sys.exit(main())
