"""A portable guard against tests that depend on what earlier tests left in the server.

The text suites share one live server, so a test can pass only because of the KV cache an
earlier test left (on AVX-512 CPUs a reused prefix is enough to flip a greedy answer). Running
them again in another order makes such a dependence fail on every machine, not only on the
ones whose numerics happen to expose it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

from tests.support import ROOT

SUITES = ["tests/e2e/test_text_api.py", "tests/e2e/test_structured_output.py"]


def test_text_suites_pass_in_a_shuffled_order():
    seed = int(os.environ.get("LOCALAI_TEST_ORDER_SEED") or random.randrange(1 << 30))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--order-seed={seed}",
                             *SUITES], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (
        f"the text suites fail in the order of seed {seed} (rerun: LOCALAI_TEST_ORDER_SEED={seed} "
        f"python3 build.py test {' '.join(SUITES)}):\n{result.stdout[-6000:]}")
