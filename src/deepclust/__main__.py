import os
import sys

from deepclust.cli import main

code = main()
from deepclust.distributed import launched_by_torchrun  # noqa: E402 - imported by main() already

if launched_by_torchrun():
    # torchrun: the run is over (outputs written and closed, the process group destroyed). Leave without
    # the interpreter's C++ teardown, where a rank sometimes aborted ("terminate called without an active
    # exception", SIGABRT, in 1 run of 4-8 on the 2-core CPU machine) and torchrun then reported the
    # finished run as failed
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
