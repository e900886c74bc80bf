#!/bin/bash
# Boots a VM-tier kernel with the C prototype and prints its results.
# usage: run-vm.sh KERNEL_DIR (e.g. ~/.cache/chaos/kernels/6.12)   [needs qemu, busybox-static, cpio]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kdir=$1
vmlinuz=$(ls "$kdir"/root/boot/vmlinuz-*)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,proc,sys,tmp,etc,mnt,lib64,lib/x86_64-linux-gnu}
cp /usr/bin/busybox "$work/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/bin/$a"; done
for b in loader fusesrv workload; do cp "$here/$b" "$work/bin/"; done
mkdir -p "$work/lib/x86_64-linux-gnu"; cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$work/lib/x86_64-linux-gnu/"  # pthread_cancel in libfuse
cp "$here/block.bpf.o" "$work/"
cp /usr/sbin/bpftool "$work/bin/"
for m in $(find "$kdir/root" -name "fuse.ko*"); do case $m in *.xz) xz -dc "$m";; *.zst) zstd -qdc "$m";; *) cat "$m";; esac > "$work/fuse.ko"; done
for lib in $(ldd "$here/loader" "$here/fusesrv" "$here/workload" /usr/sbin/bpftool | awk '/=>/ {print $3} /ld-linux/ {print $1}' | sort -u); do
    mkdir -p "$work$(dirname "$lib")"; cp -L "$lib" "$work$lib"
done
printf '127.0.0.1 localhost\n' > "$work/etc/hosts"
printf 'root:x:0:0::/:/bin/sh\n' > "$work/etc/passwd"
cp "$here/guest-init.sh" "$work/init"; chmod +x "$work/init"
(cd "$work" && find . | cpio -o -H newc --quiet) > "$work/../initramfs-$$.cpio"
timeout 600 qemu-system-x86_64 -m 1024 -smp 2 -nographic -no-reboot -kernel "$vmlinuz" \
    -initrd "$work/../initramfs-$$.cpio" \
    -append "console=ttyS0 quiet panic=-1 lsm=lockdown,capability,bpf" </dev/null
rm -f "$work/../initramfs-$$.cpio"
