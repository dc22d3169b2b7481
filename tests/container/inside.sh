#!/usr/bin/env bash
# The container's first process under scripts/container-run: prepare the
# container the way the design asks (store roots and scratch on loop-backed
# filesystems made in here), run CMD, and undo it all before exiting.
#
#   /src/tests/container/inside.sh CMD [ARGS...]
#
# Inside:
#   /src                  the checkout: read-only bind mount from the host,
#                         with a writable overlay on top (writes stay in here)
#   /scratch/xfs          loop-backed xfs (reflink=1, ftype=1); TMPDIR is on it
#   /scratch/ext4         loop-backed ext4; $LAYERFS_SCRATCH_EXT4 names it
#   /opt/venv             the image's virtualenv, with the checkout installed
#
# Exits with CMD's status; a mount or loop device it cannot undo makes the
# exit status non-zero.
set -euo pipefail
say() { echo "inside: $*" >&2; }
size=${CONTAINER_SCRATCH_SIZE:-6G}

child=
cleanup() {
    local status=$? m d
    trap - EXIT INT TERM
    if [ -n "$child" ]; then
        say "interrupted: stopping ${1:-the command} and cleaning up"
        kill -TERM "$child" 2>/dev/null && sleep 1
        kill -KILL "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    cd /
    # Deepest first: whatever CMD left mounted under /scratch, then the
    # filesystems themselves, then their loop devices.
    for m in $(awk '$2 ~ "^/scratch/|^/src$" {print $2}' /proc/self/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" || status=1
    done
    for d in $(losetup --list --noheadings -O NAME,BACK-FILE | awk '$2 ~ "^/scratch/" {print $1}'); do
        losetup -d "$d" || status=1
    done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A runtime fills the container's /dev once, at start, from the host's
# devices; a loop device the kernel allocates later (LOOP_CTL_GET_FREE when
# all are busy) has no node here, and losetup then fails. Nodes for the
# first 256 loop devices close that gap; a node alone allocates nothing.
max_part=$(cat /sys/module/loop/parameters/max_part 2>/dev/null || echo 0)
shift_=0
while ((max_part >> shift_)); do shift_=$((shift_ + 1)); done
for i in $(seq 0 255); do
    [ -e "/dev/loop$i" ] || mknod -m 660 "/dev/loop$i" b 7 $((i << shift_))
done

for fs in xfs ext4; do
    truncate -s "$size" "/scratch/$fs.img"
    dev=$(losetup --find --show "/scratch/$fs.img")
    case $fs in
        xfs) mkfs.xfs -q -f -m reflink=1 -n ftype=1 "$dev" ;;
        ext4) mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$dev" ;;
    esac
    mkdir -p "/scratch/$fs"
    mount "$dev" "/scratch/$fs"
    mkdir -m 1777 "/scratch/$fs/tmp"
done
export TMPDIR=/scratch/xfs/tmp LAYERFS_SCRATCH_EXT4=/scratch/ext4/tmp
# What the tier claims: the root is the container's overlay, scratch is not.
for check in /:overlayfs /scratch/xfs:xfs /scratch/ext4:ext2/ext3; do
    fstype=$(stat -f -c %T "${check%%:*}")
    [ "$fstype" = "${check#*:}" ] || { say "${check%%:*} is on $fstype, not ${check#*:}"; exit 1; }
done

# The checkout stays read-only for the host; an overlay takes this
# container's writes (the editable install's metadata, caches).
mkdir -p /scratch/ext4/src/upper /scratch/ext4/src/work
mount -t overlay overlay \
    -o lowerdir=/src,upperdir=/scratch/ext4/src/upper,workdir=/scratch/ext4/src/work /src
cd /src
/opt/venv/bin/pip install -q --no-deps --no-build-isolation --no-index -e /src 2>&1 |
    grep -v -e '^ *!!' -e 'WheelFile' -e '^\s*$' || true
# mount(8) looks for mount.<type> helpers in /sbin only.
ln -sf /opt/venv/bin/mount.fuse.layerfs /usr/sbin/mount.fuse.layerfs
export PATH=/opt/venv/bin:$PATH PYTHON=/opt/venv/bin/python LAYERFS_IN_CONTAINER=1

# In the background, so that a signal runs the trap at once (bash defers
# traps until a foreground command returns).
"$@" &
child=$!
status=0
wait "$child" || status=$?
child=
exit "$status"
