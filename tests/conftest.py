"""Settings shared by every test file."""

from __future__ import annotations

import os
import signal

from hypothesis import settings

# The README's test command (scripts/test.sh) runs the "ci" profile: every
# property test draws the same examples on every run, so the verdict depends on
# the code, never on the draw.  Plain pytest runs "dev": fresh examples each
# run, which is how new counterexamples are found (add them with @example).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("DEMINE_HYPOTHESIS_PROFILE", "dev"))

# A suite started in the background by a shell without job control (as CI may
# be: `.ci/run &`, `nohup ...`) starts with SIGINT ignored, and every process a
# test starts inherits that, so a test's Ctrl-C to `demine batch` or `demine
# console` was lost (they went on, or hung). Give the suite a terminal's
# foreground default: a Python handler here is reset to the default in each
# child at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
