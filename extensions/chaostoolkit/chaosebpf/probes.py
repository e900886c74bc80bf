"""Probes: read the faults and their hit counters from the chaos daemon."""
from typing import Any, Dict, List, Optional

from chaosebpf import ChaosDaemonError, daemon_request, state

__all__ = ["counters", "faults"]


def counters(
    fault_id: Optional[int] = None, configuration: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
    """A fault's counters now: ``matched`` (calls or packets of the target that matched),
    ``injected`` (failed, delayed, dropped...) and ``counters`` per syscall. Without
    ``fault_id``, the fault this experiment injected last."""
    if fault_id is None:
        if not state.injected:
            raise ChaosDaemonError("no fault injected by this experiment yet: give fault_id")
        fault_id = state.injected[-1]
    return daemon_request("GET", f"/faults/{int(fault_id)}", None, configuration)


def faults(configuration: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Every active fault of the daemon with its counters."""
    return daemon_request("GET", "/faults", None, configuration)
