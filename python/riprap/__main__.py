"""`python -m riprap`: the same as the `riprap` command."""

from ._cli import main

raise SystemExit(main())
