"""Settings shared by every test file."""

from __future__ import annotations

import os

from hypothesis import settings

# The README's test command (scripts/test.sh) runs the "ci" profile: every
# property test draws the same examples on every run, so the verdict depends on
# the code, never on the draw.  Plain pytest runs "dev": fresh examples each
# run, which is how new counterexamples are found (add them with @example).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("DEMINE_HYPOTHESIS_PROFILE", "dev"))
