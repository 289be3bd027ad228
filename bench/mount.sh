#!/usr/bin/env bash
# Issue 3 benchmark (prints figures; not a timed test).
#
# Starts `ringfs up --mount` (namenode + 3 datanodes, replication 3) with its data under a temp dir,
# and runs the same operations on the mount and on a local directory of the same disk:
#   1 GiB sequential write + fsync, cold read (caches dropped), 4 KiB random reads,
#   2 000 x 4 KiB files: create, stat, `ls -l`, read, delete; `mkdir -p` of 200 five-deep paths.
# Prints each figure and its ratio to local.
# Targets (issue 3): seq write >= 0.5 x local, cold read >= 0.6 x local, creates >= 3 500 files/s,
# `ls -l` of 2 000 files <= 100 ms.
#
# Sequential write and cold read are the fastest of RUNS runs (default 3) on both sides: on this VM
# the first large page-cache write after dropping caches can be several times slower than the next
# ones, and a slow local reference would flatter the ratios (bench/put_get.sh does the same).
#
# Environment: SIZE_MIB (default 1024), FILES (2000), RUNS (3), RINGFS_BIN (default
# target/release/ringfs, built if absent), BENCH_DIR (parent of the temp dir, default target/), ONLY
# (comma-separated parts to run: seq = write + cold read, random = 4 KiB random reads (needs seq),
# small = small files and mkdir; default all), COMPARE_DIR (a directory on another file system,
# e.g. a MooseFS mount, measured the same way and printed as one more column; bench/moosefs.sh starts one).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${SIZE_MIB:-1024}
ONLY=${ONLY:-seq,random,small}
FILES=${FILES:-2000}
BIN=${RINGFS_BIN:-target/release/ringfs}
if [ ! -x "$BIN" ]; then
    echo "building $BIN ..." >&2
    cargo build --release --bin ringfs >&2
fi
BIN=$(realpath "$BIN")

mkdir -p "${BENCH_DIR:-target}"
WORK=$(mktemp -d "$(realpath "${BENCH_DIR:-target}")/bench-mount.XXXXXX")
MNT="$WORK/mnt"
LOCAL="$WORK/local"
mkdir -p "$MNT" "$LOCAL"
UP_PID=
cleanup() {
    if [ -n "$UP_PID" ]; then
        kill -TERM "$UP_PID" 2>/dev/null || true
        wait "$UP_PID" 2>/dev/null || true
    fi
    umount -l "$MNT" 2>/dev/null || true
    rm -rf "$WORK"
    if [ -n "${PEER:-}" ]; then rm -rf "$PEER"; fi
}
trap cleanup EXIT

"$BIN" up --data-dir "$WORK/cluster" --namenode-listen 127.0.0.1:0 --mount "$MNT" \
    >"$WORK/up.out" 2>"$WORK/up.log" &
UP_PID=$!
deadline=$((SECONDS + 60))
until grep -q "mounted at" "$WORK/up.out" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$UP_PID" 2>/dev/null; then
        echo "ringfs up did not get ready; log:" >&2
        tail -20 "$WORK/up.log" >&2
        exit 1
    fi
    sleep 0.2
done

PEER=
if [ -n "${COMPARE_DIR:-}" ]; then
    PEER=$(mktemp -d "$COMPARE_DIR/bench-mount.XXXXXX")
fi

python3 - "$MNT" "$LOCAL" "$SIZE_MIB" "$FILES" "$ONLY" "${RUNS:-3}" "$PEER" <<'PY'
import os, random, subprocess, sys, time

mnt, local, size_mib, nfiles = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
only = set(sys.argv[5].split(","))
runs = max(1, int(sys.argv[6]))
peer = sys.argv[7]
MIB = 1 << 20

def drop_caches():
    subprocess.run(["sync"])
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")

def seq_write(root):
    path = os.path.join(root, "big")
    buf = os.urandom(MIB)
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(size_mib):
        os.write(fd, buf)
    os.fsync(fd)
    os.close(fd)
    return size_mib / (time.perf_counter() - t)

def cold_read(root):
    drop_caches()
    t = time.perf_counter()
    with open(os.path.join(root, "big"), "rb", buffering=0) as f:
        while f.read(4 * MIB):
            pass
    return size_mib / (time.perf_counter() - t)

def random_reads(root, n=2000):
    drop_caches()
    size = size_mib * MIB
    rng = random.Random(7)
    fd = os.open(os.path.join(root, "big"), os.O_RDONLY)
    t = time.perf_counter()
    for _ in range(n):
        os.pread(fd, 4096, rng.randrange(0, size // 4096) * 4096)
    os.close(fd)
    return n / (time.perf_counter() - t)

def small_files(root):
    d = os.path.join(root, "small")
    os.mkdir(d)
    data = os.urandom(4096)
    out = {}
    t = time.perf_counter()
    for i in range(nfiles):
        with open(os.path.join(d, f"f{i:05}"), "wb") as f:
            f.write(data)
    out["create 4 KiB files/s"] = nfiles / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(nfiles):
        os.stat(os.path.join(d, f"f{i:05}"))
    out["stat/s"] = nfiles / (time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run(["ls", "-l", d], stdout=subprocess.DEVNULL, check=True)
    out["ls -l (ms, lower is better)"] = (time.perf_counter() - t) * 1000
    drop_caches()
    t = time.perf_counter()
    for i in range(nfiles):
        with open(os.path.join(d, f"f{i:05}"), "rb") as f:
            f.read()
    out["read 4 KiB files/s"] = nfiles / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(nfiles):
        os.unlink(os.path.join(d, f"f{i:05}"))
    out["delete/s"] = nfiles / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(200):
        os.makedirs(os.path.join(d, f"a{i}", "b", "c", "d", "e"))
    out["mkdir -p 200 x 5-deep (ms, lower is better)"] = (time.perf_counter() - t) * 1000
    return out

results = {}
sides = [("local", local), ("ringfs", mnt)] + ([("compare", peer)] if peer else [])
for name, root in sides:
    r = {}
    if "seq" in only or "random" in only:
        r["seq write+fsync MiB/s"] = max(seq_write(root) for _ in range(runs))
    if "seq" in only:
        r["cold read MiB/s"] = max(cold_read(root) for _ in range(runs))
    if "random" in only:
        r["4 KiB random reads/s"] = random_reads(root)
    if "small" in only:
        r.update(small_files(root))
    results[name] = r

def ratio(k, side):
    lo, x = results["local"][k], results[side][k]
    return (lo / x) if "lower is better" in k else (x / lo)

head = f"{'operation':<46}{'local':>12}{'ringfs':>12}{'ratio':>9}"
if peer:
    head += f"{'compare':>12}{'ratio':>9}"
print(head)
for k in results["local"]:
    line = f"{k:<46}{results['local'][k]:>12.1f}{results['ringfs'][k]:>12.1f}{ratio(k, 'ringfs'):>8.2f}x"
    if peer:
        line += f"{results['compare'][k]:>12.1f}{ratio(k, 'compare'):>8.2f}x"
    print(line)
print(f"(ratio: relative to local, >1 is better than local; sequential figures: fastest of {runs})")
if peer:
    print(f"(compare: {os.path.dirname(peer)})")
PY
