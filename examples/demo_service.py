#!/usr/bin/env python3
"""A demo web service for the chaos examples, run in a cgroup of its own.

GET /health connects to the service's backend (here: its own listening port, standing in for
a database) and answers 200 {"status": "ok"} when that works, or 503 {"status": "degraded"}
when the connection fails. A connect fault on the service's cgroup therefore shows in /health,
while every other process on the machine is untouched.

    demo_service.py ensure [--port 8765] [--cgroup chaos-demo]   start it unless it runs
    demo_service.py stop   [--port 8765] [--cgroup chaos-demo]   stop it, remove the cgroup

The cgroup is a directory under the cgroup v2 mount (found in /proc/self/mountinfo), the
same path the examples give chaos as the target. Needs root, like chaos itself.
"""
import argparse
import http.server
import json
import os
import signal
import socket
import sys
import time


def cgroup2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    sys.exit("no cgroup2 filesystem is mounted")


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def serve(port):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = 200, {"status": "ok"}
            if self.path == "/health":
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                except OSError as err:
                    status, body = 503, {"status": "degraded", "error": str(err)}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.serve_forever()


def ensure(port, cgroup_dir):
    if listening(port):
        return 0
    os.makedirs(cgroup_dir, exist_ok=True)
    if os.fork() == 0:
        os.setsid()
        with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        serve(port)
        os._exit(0)
    deadline = time.time() + 10
    while time.time() < deadline:
        if listening(port):
            print(f"demo service listening on 127.0.0.1:{port} in {cgroup_dir}")
            return 0
        time.sleep(0.05)
    print("demo service did not start", file=sys.stderr)
    return 1


def stop(cgroup_dir):
    procs = os.path.join(cgroup_dir, "cgroup.procs")
    if not os.path.exists(procs):
        return 0
    for _ in range(100):
        with open(procs) as f:
            pids = [int(p) for p in f.read().split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    for _ in range(100):
        try:
            os.rmdir(cgroup_dir)
            break
        except OSError:
            time.sleep(0.05)
    print(f"demo service stopped, {cgroup_dir} removed")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["ensure", "stop"])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--cgroup", default="chaos-demo")
    args = parser.parse_args()
    cgroup_dir = os.path.join(cgroup2_root(), args.cgroup.strip("/"))
    if args.command == "ensure":
        return ensure(args.port, cgroup_dir)
    return stop(cgroup_dir)


if __name__ == "__main__":
    sys.exit(main())
