"""Put on the PYTHONPATH of a ``filiera serve`` under test (tests/reliability/target.py) only for
a negative control of TESTPLAN T1: Python imports this module at start-up in every process of
the server, and it breaks the server as ``FILIERA_T1_FAULT`` says (tests/reliability/faults.py).
Production code has no such switch."""

import os

if os.environ.get("FILIERA_T1_FAULT"):
    from tests.reliability.faults import install

    install(os.environ["FILIERA_T1_FAULT"])
