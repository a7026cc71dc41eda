"""pg-tuner: an autonomous PostgreSQL index tuner that proves its changes and undoes bad ones."""

from __future__ import annotations

__version__ = "0.1.0"
