"""What the environment tells the suite: whether it runs under CI, and how slow to allow."""

from __future__ import annotations

import os

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# One timing unit for every sleep and deadline in the suite; slow machines raise it.
TIME_UNIT = float(os.environ.get("T3PROBE_TEST_TIME_UNIT", "1.0"))
