#!/usr/bin/env bash
# Issue 4 benchmark (prints figures; not a timed test).
#
# 1. Re-replication: 5 datanodes, 2 GiB at R=3 with default throttles; `kill -9` one datanode; measure the
#    time to detection, the time from detection to full health (fsck: every block at 3 replicas) and the
#    re-replication rate (bytes the dead node held / repair time). Foreground reads (`get` to /dev/null in
#    a loop) run during the repair; their throughput is compared with the same reads before the kill.
# 2. Rebalancing: the dead node comes back (excess replicas trimmed), then a 6th datanode joins; count the
#    replicas that moved (block locations before/after from `stat --json`) against the ideal 1/6 of them.
#
# Targets (issue 4): >= 100 MB/s of re-replication; moved <= 1.25 x ideal.
# Environment: SIZE_MIB (2048), FILES (8), BLOCK_SIZE (16MiB: enough blocks for the share figure), HEARTBEAT (1s), DEAD_AFTER (4s),
#              RINGFS_BIN (target/release/ringfs, built if absent), BENCH_DIR (target/), KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${SIZE_MIB:-2048}
FILES=${FILES:-8}
BLOCK_SIZE=${BLOCK_SIZE:-16MiB}
HEARTBEAT=${HEARTBEAT:-1s}
DEAD_AFTER=${DEAD_AFTER:-4s}
BIN=${RINGFS_BIN:-target/release/ringfs}

if [ ! -x "$BIN" ]; then
    echo "building $BIN ..." >&2
    cargo build --release --bin ringfs >&2
fi
BIN=$(realpath "$BIN")
command -v jq >/dev/null || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >&2; }

mkdir -p "${BENCH_DIR:-target}"
WORK=$(mktemp -d "$(realpath "${BENCH_DIR:-target}")/bench-heal.XXXXXX")
declare -A PID ADDRS
cleanup() {
    for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

drop_caches() {
    sync
    if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# start NAME LISTEN ARGS... : background process, waits for `listening on ADDR`.
start() {
    local name=$1 listen=$2; shift 2
    : > "$WORK/$name.out"
    "$BIN" "$@" --listen "$listen" >> "$WORK/$name.out" 2>> "$WORK/$name.log" &
    PID[$name]=$!
    local i a
    for i in $(seq 1 300); do
        a=$(sed -n 's/^listening on //p' "$WORK/$name.out" | head -n1)
        if [ -n "$a" ]; then ADDRS[$name]=$a; return 0; fi
        kill -0 "${PID[$name]}" 2>/dev/null || { echo "$name exited:" >&2; tail -20 "$WORK/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "$name did not start" >&2; exit 1
}
start_datanode() { start "$1" "${2:-127.0.0.1:0}" datanode --data-dir "$WORK/$1" --namenode "$NN"; }

live_count() { "$BIN" report --json | jq '[(.datanodes? // .)[] | select(.state == "live")] | length'; }
state_of() { "$BIN" report --json | jq -r --arg a "$1" '(.datanodes? // .)[] | select(.address == $a) | .state'; }
wait_live() {
    local i
    for i in $(seq 1 600); do [ "$(live_count)" = "$1" ] && return 0; sleep 0.1; done
    echo "never saw $1 live datanodes" >&2; exit 1
}
healthy() {
    "$BIN" fsck --json / | jq -e '.healthy_blocks == .blocks and .replicas == 3 * .blocks and .under_replicated == 0
        and .over_replicated == 0 and .missing == 0 and .corrupt == 0 and ((.misplaced // 0) == 0)' >/dev/null
}
wait_healthy() {
    local deadline=$(( $(date +%s) + ${1:-1800} ))
    until healthy; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "cluster did not become healthy" >&2; "$BIN" fsck --json / >&2; exit 1; }
        sleep 0.2
    done
}
# "block_id address" lines for every replica of every file.
locations() {
    local f
    for f in $(seq 0 $((FILES - 1))); do
        "$BIN" stat --json "/data/f$f" | jq -r '.blocks[] | .id as $id | .locations[] | "\($id) \(if type == "string" then . else .address end)"'
    done | sort
}

export RUST_LOG=${RUST_LOG:-warn}
start namenode 127.0.0.1:0 namenode --data-dir "$WORK/namenode" --replication 3 --block-size "$BLOCK_SIZE" \
    --heartbeat-interval "$HEARTBEAT" --dead-after "$DEAD_AFTER"
NN=${ADDRS[namenode]}
export RINGFS_NAMENODE=$NN
for i in 0 1 2 3 4; do start_datanode "dn$i"; done
wait_live 5

FILE_MIB=$((SIZE_MIB / FILES))
echo "writing $FILES x $FILE_MIB MiB at R=3 ..." >&2
"$BIN" mkdir /data
for f in $(seq 0 $((FILES - 1))); do
    head -c "$((FILE_MIB * 1024 * 1024))" /dev/urandom > "$WORK/src"
    "$BIN" put "$WORK/src" "/data/f$f"
done
rm -f "$WORK/src"
wait_healthy 120

# Foreground reads: read the files in a loop until $WORK/stop-reads exists; prints MiB/s.
reader() {
    local bytes=0 t0 t1 f=0
    t0=$(now)
    while [ ! -e "$WORK/stop-reads" ]; do
        "$BIN" get "/data/f$((f % FILES))" - > /dev/null
        bytes=$((bytes + FILE_MIB)); f=$((f + 1))
        [ -n "${1:-}" ] && [ "$f" -ge "$1" ] && break
    done
    t1=$(now)
    awk -v b="$bytes" -v a="$t0" -v c="$t1" 'BEGIN { printf "%.1f", b / (c - a) }'
}

drop_caches
BASE_READ=$(reader "$FILES")

VICTIM=dn2
VADDR=${ADDRS[$VICTIM]}
VBYTES=$(find "$WORK/$VICTIM/blocks" -name '*.data' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
VBLOCKS=$(find "$WORK/$VICTIM/blocks" -name '*.data' | wc -l)
drop_caches
echo "killing $VICTIM ($VADDR): $VBLOCKS replicas, $((VBYTES / 1048576)) MiB ..." >&2
T_KILL=$(now)
kill -9 "${PID[$VICTIM]}"; wait "${PID[$VICTIM]}" 2>/dev/null || true; unset "PID[$VICTIM]"
until [ "$(state_of "$VADDR")" = dead ]; do sleep 0.05; done
T_DEAD=$(now)
rm -f "$WORK/stop-reads"
reader > "$WORK/read-during" &
READER=$!
wait_healthy 1800
T_HEALTHY=$(now)
touch "$WORK/stop-reads"; wait "$READER"
REPAIR_READ=$(cat "$WORK/read-during")
REPAIR_S=$(secs "$T_DEAD" "$T_HEALTHY")
REPAIR_MBS=$(awk -v b="$VBYTES" -v s="$REPAIR_S" 'BEGIN { printf "%.1f", (s > 0 ? b / 1e6 / s : 0) }')

# Replica data files on all datanode disks.
disk_replicas() { find "$WORK"/dn*/blocks -name '*.data' 2>/dev/null | wc -l; }
BLOCKS=$("$BIN" fsck --json / | jq .blocks)
echo "restarting $VICTIM (excess replicas get trimmed) ..." >&2
T0=$(now)
start_datanode "$VICTIM" "$VADDR"
wait_live 5
until [ "$(disk_replicas)" = $((3 * BLOCKS)) ] && healthy; do sleep 0.2; done
TRIM_S=$(secs "$T0" "$(now)")

locations > "$WORK/before"
TOTAL=$(wc -l < "$WORK/before")
echo "adding a 6th datanode ..." >&2
T0=$(now)
start_datanode dn5
wait_live 6
NEWADDR=${ADDRS[dn5]}
until healthy && [ "$(disk_replicas)" = $((3 * BLOCKS)) ] && locations | grep -q " $NEWADDR\$"; do sleep 0.2; done
JOIN_S=$(secs "$T0" "$(now)")
locations > "$WORK/after"
MOVED=$(comm -13 "$WORK/before" "$WORK/after" | wc -l)
ON_NEW=$(grep -c " $NEWADDR\$" "$WORK/after" || true)
IDEAL=$(awk -v t="$TOTAL" 'BEGIN { printf "%.1f", t / 6 }')

echo
echo "ringfs healing benchmark: 5 datanodes, $SIZE_MIB MiB at R=3 in $BLOCK_SIZE blocks, heartbeat $HEARTBEAT, dead after $DEAD_AFTER"
echo "detection:            $(secs "$T_KILL" "$T_DEAD") s after kill -9"
echo "re-replication:       $VBLOCKS replicas, $((VBYTES / 1048576)) MiB in $REPAIR_S s after detection = $REPAIR_MBS MB/s (target >= 100)"
echo "time to healthy:      $(secs "$T_KILL" "$T_HEALTHY") s after kill -9"
echo "foreground get:       $BASE_READ MiB/s before, $REPAIR_READ MiB/s during repair"
echo "trim after return:    $TRIM_S s from restart to exactly 3 replica files per block"
echo "6th node joins:       moved $MOVED of $TOTAL replicas (ideal $IDEAL = 1/6; $(awk -v m="$MOVED" -v i="$IDEAL" 'BEGIN { printf "%.2f", m / i }')x ideal, target <= 1.25x), $ON_NEW now on the new node, $JOIN_S s to settle"
