#!/usr/bin/env bash
# The GPU suite on the device machine of this workplace, from the repo root, in one call:
#   the device tool's run with carry [".whl"] and the command `bash benchmarks/gpu_suite.sh`
# (.whl/ made here first by `bash benchmarks/fetch_wheels.sh`). It installs the wheels the machine's
# image lacks into /tmp/site, then runs benchmarks/gpu_suite.py with the arguments given here.
# The wheels are for Python 3.12 on x86-64 Linux; elsewhere the installed packages are used.
# Outside this workplace: pip install the package (`pip install -e .`), then `python benchmarks/gpu_suite.py`.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
py=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "no .whl/*.whl: running with the installed packages (bash benchmarks/fetch_wheels.sh makes them)"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
elif [ "$py" != "3.12" ] || [ "$(uname -m)" != "x86_64" ]; then
    echo ".whl/ holds wheels for Python 3.12 on x86-64, this is Python $py on $(uname -m): running with the installed packages"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || { echo "error: .whl: pip could not install the wheels into /tmp/site" >&2; exit 2; }
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
exec python3 benchmarks/gpu_suite.py "$@"
