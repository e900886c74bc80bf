"""Chaos Toolkit extension for chaos, the eBPF fault injector.

Faults are started, read and removed through a running ``chaos daemon``, over HTTP on its Unix
socket, with the Python standard library only.
"""
import http.client
import json
import os
import socket
from typing import Any, Dict, List, Optional

__version__ = "0.1.0"
__all__ = ["__version__", "discover", "ChaosDaemonError", "daemon_request", "socket_path"]

DEFAULT_SOCKET = "/run/chaos/chaos.sock"


class ChaosDaemonError(Exception):
    """The daemon refused a request (its message names the field at fault), or is not there."""


def socket_path(configuration: Optional[Dict[str, Any]] = None) -> str:
    """The daemon's socket: the configuration's ``chaos_socket``, ``$CHAOS_SOCKET`` or
    /run/chaos/chaos.sock."""
    if configuration and configuration.get("chaos_socket"):
        return str(configuration["chaos_socket"])
    return os.environ.get("CHAOS_SOCKET") or DEFAULT_SOCKET


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("chaos", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def daemon_request(
    method: str,
    path: str,
    body: Any = None,
    configuration: Optional[Dict[str, Any]] = None,
    timeout: float = 60.0,
) -> Any:
    """Sends one request to the daemon and returns its JSON answer; raises
    :class:`ChaosDaemonError` with the daemon's message when it refuses."""
    where = socket_path(configuration)
    conn = _UnixConnection(where, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = response.read()
    except OSError as err:
        raise ChaosDaemonError(
            f"no chaos daemon answers on {where} ({err}); start one with `chaos daemon`, "
            "or set chaos_socket in the configuration or $CHAOS_SOCKET"
        ) from err
    finally:
        conn.close()
    try:
        answer = json.loads(data) if data else None
    except ValueError:
        answer = data.decode(errors="replace")
    if response.status >= 400:
        message = answer.get("error") if isinstance(answer, dict) else answer
        raise ChaosDaemonError(f"the chaos daemon refused ({response.status}): {message}")
    return answer


def discover(discover_system: bool = True) -> Dict[str, Any]:
    """What this extension offers, for ``chaos discover chaostoolkit-chaosebpf``."""
    from chaoslib.discovery.discover import initialize_discovery_result

    discovery = initialize_discovery_result("chaostoolkit-chaosebpf", __version__, "chaosebpf")
    discovery["activities"].extend(_activities())
    return discovery


def _activities() -> List[Dict[str, Any]]:
    from chaoslib.discovery.discover import discover_actions, discover_probes

    activities: List[Dict[str, Any]] = []
    activities.extend(discover_actions("chaosebpf.actions"))
    activities.extend(discover_probes("chaosebpf.probes"))
    return activities
