"""`python -m tuner` is the same as the `pg-tuner` command."""

from __future__ import annotations

from tuner.cli import main

raise SystemExit(main())
