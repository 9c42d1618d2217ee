"""The service processes' collector settings (metatrail.consumer.service.gcpolicy)."""

from __future__ import annotations

import subprocess
import sys

from metatrail.consumer.service.gcpolicy import GEN0_THRESHOLD

# Run in a child: the settings are process-wide and must not leak into this test session.
PROBE = """
import gc
from metatrail.consumer.service.gcpolicy import tune_for_batches
young_before = gc.get_threshold()[0]
frozen_before = gc.get_freeze_count()
tune_for_batches()
print(young_before, frozen_before, gc.get_threshold()[0], gc.get_freeze_count())
"""


def test_tuning_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    young_before, frozen_before, young_after, frozen_after = map(int, out.split())
    assert young_before < GEN0_THRESHOLD == young_after
    assert frozen_before == 0
    assert frozen_after > 10_000  # the imported modules' objects leave every later collection

