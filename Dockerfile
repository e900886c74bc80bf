# chaos in a container: a static (musl) chaos binary in an otherwise empty image, running the
# daemon by default. No base image is needed (or can be pulled on the project's machines), so
# the binary is built on the host first and copied in:
#
#   scripts/image            # = the two steps below, tags chaos:latest (CHAOS_IMAGE=name:tag)
#
#   cargo build --release -p chaos-user --bin chaos --target x86_64-unknown-linux-musl
#   docker build -t chaos .
#
# Everything the faults use at run time is in the binary: the eBPF object is embedded, and
# qdiscs (fq for delay and rate, clsact before 6.6) are set over rtnetlink, not with `tc`.
# How to run it (host PID namespace, cgroup and bpf mounts, capabilities): docs/containers.md.
FROM scratch
COPY target/x86_64-unknown-linux-musl/release/chaos /chaos
# The daemon's API socket lives here; mount a host directory to reach it from the host.
VOLUME /run/chaos
# Prometheus metrics, when the daemon is started with --metrics 0.0.0.0:9464.
EXPOSE 9464
ENTRYPOINT ["/chaos"]
# The root filesystem may be read-only: the audit log goes beside the socket.
CMD ["daemon", "--metrics", "0.0.0.0:9464", "--audit-log", "/run/chaos/audit.jsonl"]
