#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored, repo root) the wheels of the packages the GPU machine's image
# lacks, for Python 3.12 on x86-64 Linux, so that `benchmarks/gpu_suite.sh` can install them there
# without a network (it is carried with the working tree: the device tool's `carry: [".whl"]`).
#
#   bash benchmarks/fetch_wheels.sh            # run once, here, where pip reaches the index
#
# The versions are those of the development machine. Their pure-Python needs that the image may
# lacks come along too: tensorboardX (the trainer's event files), grain with array-record and
# portpicker (the trainer's loader workers: `import grain` imports both) and, although the image
# has them, absl-py and PyYAML (ml_collections'), which are small. numpy, scipy, packaging,
# protobuf, cloudpickle, etils and psutil (the other needs) are in the image. A wheel of another version of the same package is removed
# first: two versions stop the whole install there. Other wheels in .whl/ are left alone.
set -euo pipefail

cd "$(dirname "$0")/.."
DEST=.whl
PINS=(
    trimesh==5.2.0
    PyMCubes==0.1.6
    fast_simplification==0.2.0
    ml_collections==1.1.0
    tensorboardX==2.6.5
    grain==0.2.18
    array-record==0.8.6
    portpicker==1.6.0
    absl-py==2.5.1
    PyYAML==6.0.3
)
mkdir -p "$DEST"

normalize() { echo "$1" | tr '[:upper:]-.' '[:lower:]__'; }

for pin in "${PINS[@]}"; do
    name=$(normalize "${pin%%==*}")
    version=${pin##*==}
    for f in "$DEST"/*.whl; do
        [ -e "$f" ] || continue
        base=$(basename "$f")
        if [ "$(normalize "${base%%-*}")" = "$name" ]; then
            rest=${base#*-}
            if [ "${rest%%-*}" != "$version" ]; then
                echo "removing $f (another version than $version)"
                rm -f -- "$f"
            fi
        fi
    done
done

python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${PINS[@]}"

missing=0
for pin in "${PINS[@]}"; do
    name=$(normalize "${pin%%==*}")
    found=""
    for f in "$DEST"/*.whl; do
        base=$(basename "$f")
        [ "$(normalize "${base%%-*}")" = "$name" ] && found=$base
    done
    if [ -z "$found" ]; then
        echo "error: $DEST: no wheel of $pin" >&2
        missing=1
    else
        echo "  $found"
    fi
done
[ "$missing" = 0 ] || exit 2
total=$(du -sk "$DEST" | cut -f1)
echo "$DEST: $((total / 1024)) MiB in all (the device tool carries at most 64 MiB with the working tree)"
