#!/usr/bin/env bash
# Benchmark: satchel-bundle create/open of a 200 MiB tree of 20k files
# against the shell pipelines `tar -c | zstd -3 | age -r` and
# `age -d | zstd -d | tar -x`, same machine, same run. Prints wall time
# (median and best of RUNS, interleaved), the ratios, CPU time, and peak
# RSS (GNU time's %M: for a pipeline, the largest of its processes).
#
# Rerun from the workspace root:  bundle-tool/benches/bundle.sh
# Needs: tar, zstd, age, age-keygen, python3, /usr/bin/time (GNU time).
set -euo pipefail
cd "$(dirname "$0")/../.."

FILES=${FILES:-20000}
TOTAL_MIB=${TOTAL_MIB:-200}
RUNS=${RUNS:-5}
STEPS=${STEPS:-create open}   # which steps to measure
# The tree, bundles and roots go to a tmpfs by default, so that the run
# measures the tools and not the disk: on a disk, writeback of the earlier
# runs' 20,000 files lands in later runs and makes medians swing.
# BENCH_DIR=/some/disk/dir measures on a disk instead.
if [[ -z "${BENCH_DIR:-}" ]]; then
  if [[ -d /dev/shm ]]; then BENCH_DIR=/dev/shm; else BENCH_DIR=${TMPDIR:-/tmp}; fi
fi
WORK=${WORK:-$(mktemp -d "$BENCH_DIR/satchel-bench.XXXXXX")}
trap 'rm -rf "$WORK"' EXIT

for tool in tar zstd age age-keygen python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

cargo build --release --locked -q -p satchel-bundle
BIN=$PWD/target/release/satchel-bundle

echo "generating $FILES files, $TOTAL_MIB MiB in $WORK/tree" >&2
python3 - "$WORK/tree" "$FILES" "$TOTAL_MIB" <<'PY'
import base64, os, random, sys
root, files, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20
rng = random.Random(7)
avg = total // files
written = 0
for i in range(files):
    d = os.path.join(root, f"d{i % 100:02d}", f"s{(i // 100) % 20:02d}")
    os.makedirs(d, exist_ok=True)
    size = rng.randint(avg // 2, avg * 3 // 2) if i < files - 1 else max(0, total - written)
    # Half random base64 text, half repeated lines: compresses like config.
    text = base64.b64encode(rng.randbytes(size // 4 * 3 // 2)).decode()
    body = (text + ("key = value # comment\n" * (size // 22 + 1)))[:size]
    with open(os.path.join(d, f"f{i}.conf"), "w") as f:
        f.write(body)
    written += size
PY

cd "$WORK"
"$BIN" keygen signing --out admin >/dev/null
R=$("$BIN" keygen identity --out node.age 2>/dev/null)

# once NAME CMD...: cleans the outputs, runs CMD once, appends "wall maxrss_kib".
once() {
  local name=$1; shift
  rm -rf out.* root.*; mkdir -p root.satchel root.pipe
  # Write back the previous run's deletions so they do not land in this one.
  sync
  /usr/bin/time -f "%e %M %U %S" -o "t.$name" "$@" >/dev/null 2>"err.$name" || { cat "err.$name" >&2; exit 1; }
  cat "t.$name" >> "times.$name"
}
median() { sort -n "times.$1" | awk '{w[NR]=$1; m[NR]=$2} END {i=int((NR+1)/2); printf "%.2f %d", w[i], m[i]}'; }
best() { sort -n "times.$1" | head -1 | awk '{printf "%.2f", $1}'; }
# Median CPU time (user + system), which load on the machine barely moves.
cpu() { awk '{print $3 + $4}' "times.$1" | sort -n | awk '{c[NR]=$1} END {printf "%.2f", c[int((NR+1)/2)]}'; }

# Warm the page cache once.
tar -c -C tree . > /dev/null
"$BIN" create --mac 52-54-00-12-34-56 --serial 1 --expires 1d --sign-key admin.key --recipient "$R" \
  --from-dir tree -o bench.bundle >/dev/null
tar -c -C tree . | zstd -3 -q | age -r "$R" > bench.age
rm -f times.*

# Interleaved, so that a burst of load on the machine hits both sides alike.
for _ in $(seq "$RUNS"); do
  if [[ " $STEPS " == *" create "* ]]; then
    once create_satchel "$BIN" create --mac 52-54-00-12-34-56 --serial 1 --expires 1d --sign-key admin.key \
      --recipient "$R" --from-dir tree -o out.bundle
    once create_pipe sh -c "tar -c -C tree . | zstd -3 -q | age -r $R > out.age"
  fi
  if [[ " $STEPS " == *" open "* ]]; then
    once open_satchel "$BIN" open bench.bundle --identity node.age --trust admin.pub --into root.satchel
    once open_pipe sh -c "age -d -i node.age bench.age | zstd -d -q | tar -x -C root.pipe"
  fi
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo
echo "in $(df --output=fstype "$WORK" | tail -1) ($WORK); tree: $FILES files, $TOTAL_MIB MiB; bundle $(( $(stat -c %s bench.bundle) >> 20 )) MiB; $(nproc) CPUs; median of $RUNS; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| step | satchel-bundle wall (median / best) | shell pipeline wall (median / best) | wall ratio (median / best) | CPU time satchel / pipeline | satchel peak RSS | pipeline peak RSS |"
echo "|---|---|---|---|---|---|---|"
if [[ " $STEPS " == *" create "* ]]; then
read -r cs_w cs_m <<<"$(median create_satchel)"
read -r cp_w cp_m <<<"$(median create_pipe)"
echo "| create | ${cs_w} / $(best create_satchel) s | ${cp_w} / $(best create_pipe) s | $(ratio "$cs_w" "$cp_w")× / $(ratio "$(best create_satchel)" "$(best create_pipe)")× | $(cpu create_satchel) / $(cpu create_pipe) s | $((cs_m / 1024)) MiB | $((cp_m / 1024)) MiB |"
fi
if [[ " $STEPS " == *" open "* ]]; then
read -r os_w os_m <<<"$(median open_satchel)"
read -r op_w op_m <<<"$(median open_pipe)"
echo "| open | ${os_w} / $(best open_satchel) s | ${op_w} / $(best open_pipe) s | $(ratio "$os_w" "$op_w")× / $(ratio "$(best open_satchel)" "$(best open_pipe)")× | $(cpu open_satchel) / $(cpu open_pipe) s | $((os_m / 1024)) MiB | $((op_m / 1024)) MiB |"
fi
