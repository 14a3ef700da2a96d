"""``python -m plait.flyte import|run|exec ...``."""

from plait.flyte._cli import main

raise SystemExit(main())
