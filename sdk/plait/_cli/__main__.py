"""`python -m plait._cli ...` runs the `plait` command."""

from __future__ import annotations

from plait._cli import main

raise SystemExit(main())
