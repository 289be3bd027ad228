#!/usr/bin/env bash
# A local MooseFS (the peer ringfs is compared with): one master, 3 chunkservers and a FUSE mount,
# goal 3 (three copies, as ringfs's replication 3), everything under DIR.
#
#   bash bench/moosefs.sh start DIR    # prints the mountpoint (DIR/mnt)
#   COMPARE_DIR=DIR/mnt bash bench/mount.sh
#   bash bench/moosefs.sh stop DIR
#
# Installs Debian's moosefs-master, moosefs-chunkserver and moosefs-client if missing. Ports
# 19419-19425 (MooseFS has no ephemeral-port mode). Chunkservers refuse 127.0.0.1 as the master
# address, so they use this host's first address.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi

stop() {
    umount "$dir/mnt" 2>/dev/null || umount -l "$dir/mnt" 2>/dev/null || true
    for i in 1 2 3; do
        [ -f "$dir/cs$i.cfg" ] && mfschunkserver -c "$dir/cs$i.cfg" stop >/dev/null 2>&1 || true
    done
    [ -f "$dir/mfsmaster.cfg" ] && mfsmaster -c "$dir/mfsmaster.cfg" stop >/dev/null 2>&1 || true
}

case "$cmd" in
stop)
    stop
    exit 0
    ;;
start) ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac

if ! command -v mfsmaster >/dev/null || ! command -v mfsmount >/dev/null ||
    ! command -v mfschunkserver >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        moosefs-master moosefs-chunkserver moosefs-client >&2
fi

mkdir -p "$dir"
dir=$(realpath "$dir")
mkdir -p "$dir/master" "$dir/mnt"
[ -f "$dir/master/metadata.mfs" ] || cp /var/lib/mfs/metadata.mfs.empty "$dir/master/metadata.mfs"
printf '*\t/\trw,alldirs,maproot=0\n' >"$dir/mfsexports.cfg"
cat >"$dir/mfsmaster.cfg" <<EOF
WORKING_USER = root
WORKING_GROUP = root
DATA_PATH = $dir/master
EXPORTS_FILENAME = $dir/mfsexports.cfg
MATOML_LISTEN_PORT = 19419
MATOCS_LISTEN_PORT = 19420
MATOCL_LISTEN_PORT = 19421
EOF
host=$(hostname -I | awk '{print $1}')
for i in 1 2 3; do
    mkdir -p "$dir/cs$i" "$dir/disk$i"
    echo "$dir/disk$i" >"$dir/hdd$i.cfg"
    cat >"$dir/cs$i.cfg" <<EOF
WORKING_USER = root
WORKING_GROUP = root
DATA_PATH = $dir/cs$i
HDD_CONF_FILENAME = $dir/hdd$i.cfg
CSSERV_LISTEN_PORT = $((19421 + i))
MASTER_HOST = $host
MASTER_PORT = 19420
EOF
done

mfsmaster -c "$dir/mfsmaster.cfg" start >"$dir/master.log" 2>&1
for i in 1 2 3; do
    mfschunkserver -c "$dir/cs$i.cfg" start >"$dir/cs$i.log" 2>&1
done
mfsmount "$dir/mnt" -H 127.0.0.1 -P 19421 >"$dir/mount.log" 2>&1

# Ready when the master counts 3 chunkservers' space (df shows a size).
deadline=$((SECONDS + 60))
until [ "$(df --output=size "$dir/mnt" 2>/dev/null | tail -1 | tr -d ' ')" != "0" ]; do
    if [ $SECONDS -ge $deadline ]; then
        echo "MooseFS did not get ready; logs in $dir/*.log" >&2
        stop
        exit 1
    fi
    sleep 0.5
done
mfssetgoal -r 3 "$dir/mnt" >/dev/null
echo "$dir/mnt"
