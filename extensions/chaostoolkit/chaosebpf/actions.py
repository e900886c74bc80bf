"""Actions: start and remove faults through the chaos daemon."""
from typing import Any, Dict, List, Optional

from chaosebpf import daemon_request, state

__all__ = ["inject", "stop", "stop_all"]


def inject(
    kind: str,
    target: Dict[str, Any],
    configuration: Optional[Dict[str, Any]] = None,
    **fields: Any,
) -> int:
    """Start a fault and return its id.

    The arguments are the fields of a chaos fault spec (``chaos schema``): ``kind``
    (syscall, signal, latency, net-drop, net-delay, net-rate, net-duplicate, net-corrupt, dns,
    tcp-reset),
    ``target`` ({"cgroup": PATH}, {"pid": N}, {"container": ID}, {"unit": NAME} or
    {"pod": UID}) and the kind's fields, e.g. ``syscalls``, ``errno``, ``filter``,
    ``schedule``, ``duration`` ("30s") and ``dry_run``. The daemon refuses a bad field,
    naming its path.
    """
    spec = dict(fields)
    spec["kind"] = kind
    spec["target"] = target
    fault = daemon_request("POST", "/faults", spec, configuration)
    state.injected.append(fault["id"])
    return fault["id"]


def stop(
    fault_id: Optional[int] = None, configuration: Optional[Dict[str, Any]] = None
) -> List[Dict[str, Any]]:
    """Remove a fault and return its last counters; without ``fault_id``, every fault this
    experiment injected that is still active (each one's last counters)."""
    ids = [int(fault_id)] if fault_id is not None else list(state.injected)
    if fault_id is None:
        active = {f["id"] for f in daemon_request("GET", "/faults", None, configuration)}
        ids = [i for i in ids if i in active]
    stopped = [daemon_request("DELETE", f"/faults/{i}", None, configuration) for i in ids]
    for i in ids:
        if i in state.injected:
            state.injected.remove(i)
    return stopped


def stop_all(configuration: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Remove every fault of the daemon (and abort its experiments); returns the ids removed."""
    state.injected.clear()
    return daemon_request("DELETE", "/faults", None, configuration)
