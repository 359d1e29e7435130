"""`python -m minivae`: the same as the `minivae` command."""
import sys

from minivae.cli import main

sys.exit(main())
