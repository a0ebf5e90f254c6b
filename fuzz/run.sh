#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while: fuzz/run.sh TARGET [SECONDS] [libFuzzer flags…]
#
#   TARGET   record | segment_recovery | batch | config   (fuzz/fuzz_targets/*.rs)
#   SECONDS  how long to fuzz (default 600)
#
# Nice'd (the machine is shared). New corpus entries go to fuzz/corpus/TARGET (not committed);
# the committed seeds in fuzz/seeds/TARGET are read too; a crash is written to
# fuzz/artifacts/TARGET/ and makes this script exit non-zero. Replay one with
#   cd fuzz && cargo +nightly fuzz run TARGET artifacts/TARGET/crash-…
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain; without one, set
# FUZZ_TOOLCHAIN=bootstrap to build with the stable compiler and RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"

target=${1:?usage: fuzz/run.sh TARGET [SECONDS] [libFuzzer flags…]}
seconds=${2:-600}
shift $(($# >= 2 ? 2 : 1))

case "${FUZZ_TOOLCHAIN:-nightly}" in
  nightly) cargo=(cargo +nightly fuzz) ;;
  bootstrap) export RUSTC_BOOTSTRAP=1; cargo=(cargo fuzz) ;;
  *) echo "FUZZ_TOOLCHAIN is nightly or bootstrap" >&2; exit 2 ;;
esac

# segment_recovery writes a data dir per input: keep it in memory when /dev/shm exists, in a
# scratch dir of this run's own, removed at the end.
base=${TMPDIR:-}
if [[ -z "$base" && -d /dev/shm && -w /dev/shm ]]; then
  base=/dev/shm
fi
TMPDIR=$(mktemp -d "${base:-/tmp}/replog-fuzz.XXXXXX")
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT

mkdir -p "corpus/$target"
flags=(-max_total_time="$seconds" -print_final_stats=1)
[[ -f "dict/$target.dict" ]] && flags+=(-dict="dict/$target.dict")
seeds=()
[[ -d "seeds/$target" ]] && seeds=("seeds/$target")

nice -n 10 "${cargo[@]}" run "$target" "corpus/$target" "${seeds[@]}" -- "${flags[@]}" "$@"
