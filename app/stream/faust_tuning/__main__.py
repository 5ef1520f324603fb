"""`python -m app.stream.faust_tuning`: can every patch install on the installed Faust and aiokafka?

Prints each patch (correctness or speed), whether it installs, and the sha256 of every
target's source; exits 1 when any patch would not install. Run it after changing the
pins, and see docs/operations.md ("Upgrading Faust") for what to do when it says no.
"""

import sys

from app.stream.faust_tuning import guard

print("\n".join(guard.report()))
sys.exit(1 if any(guard.problems(patch) for patch in guard.PATCHES) else 0)
