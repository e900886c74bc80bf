#!/bin/sh
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp; mount -t cgroup2 cgroup2 /sys/fs/cgroup; mount -t bpf bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security
ip link set lo up
echo "PROTO kernel $(uname -r) lsm $(cat /sys/kernel/security/lsm) nproc $(nproc)"
[ -e /fuse.ko ] && insmod /fuse.ko
ls -l /dev/fuse
for f in bpf_task_from_pid bpf_task_release bpf_get_task_exe_file bpf_put_file bpf_get_file_xattr bpf_copy_from_user_task bpf_get_dentry_xattr; do
    bpftool btf dump file /sys/kernel/btf/vmlinux 2>/dev/null | grep -q "FUNC '$f'" && echo "PROTO btf has $f" || echo "PROTO btf LACKS $f"
done
N=${N:-20}
round() { # DELAY_MS (0 = no program attached: baseline)
    d=$1; mnt=/mnt/c$d; mkdir -p $mnt; rm -f /tmp/go
    CHAOS_DELAY_MS=$d fusesrv $mnt -f -o allow_other,ro 2>/tmp/fuse$d.err &
    fpid=$!
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -e $mnt/sleep ] && break; sleep 0.2; done
    $mnt/sleep 100000 & hpid=$!
    workload target $N > /tmp/w$d.out & wpid=$!
    sleep 0.3
    tgid=$(sed -n 's/^PID //p' /tmp/w$d.out)
    lpid=
    if [ "$d" != 0 ]; then
        loader /block.bpf.o $tgid $hpid > /tmp/l$d.out 2>/tmp/l$d.err & lpid=$!
        for i in $(seq 1 50); do grep -q ATTACHED /tmp/l$d.out 2>/dev/null && break; grep -q FAILED /tmp/l$d.err 2>/dev/null && break; sleep 0.2; done
        if ! grep -q ATTACHED /tmp/l$d.out; then echo "PROTO delay=$d LOAD FAILED:"; tail -40 /tmp/l$d.err; fi
    fi
    workload outside $N > /tmp/o$d.out & opid=$!
    head -c 0 /dev/null; cat /proc/stat | head -1 > /tmp/stat0
    touch /tmp/go
    wait $wpid; wait $opid
    cat /proc/stat | head -1 > /tmp/stat1
    [ -n "$lpid" ] && { kill -TERM $lpid; wait $lpid; cat /tmp/l$d.out | grep COUNTERS | sed "s/^/PROTO delay=$d /"; }
    sed "s/^/PROTO delay=$d /" /tmp/w$d.out /tmp/o$d.out | grep -v PID
    echo "PROTO delay=$d cpu(user nice sys idle) before: $(cut -d' ' -f3-6 /tmp/stat0) after: $(cut -d' ' -f3-6 /tmp/stat1)"
    kill $hpid; wait $hpid 2>/dev/null
    umount $mnt; wait $fpid; cat /tmp/fuse$d.err | sed "s/^/PROTO delay=$d /"
}
round 0
round 100
round 10
N=5 round 1000
echo PROTO done
poweroff -f
