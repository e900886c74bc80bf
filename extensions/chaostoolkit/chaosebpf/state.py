"""The faults this process injected, newest last. Chaos Toolkit runs an experiment's
activities in one process but passes no output from one activity to the next, so ``stop`` and
``counters`` default to these."""
from typing import List

injected: List[int] = []
