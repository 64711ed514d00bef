#!/usr/bin/env bash
# The one GPU benchmark call (issue 15); benchmarks/gpu/README.md says how it is made.
#
#   bash benchmarks/gpu/run.sh OUT_DIR [--budget-s 420] [--smoke] [--steps a,b]
#
# Installs the wheels that prepare.sh put in .whl/ into a throw-away folder (nothing else is
# touched; the project itself runs from the carried src/, as its tests do), checks torch.cuda,
# then runs benchmarks/gpu/suite.py, which writes OUT_DIR/records.jsonl as runs finish. The whole
# call, installation included, ends within the budget plus a short grace. --smoke: every step on
# the CPU with tiny sizes (no GPU needed). GPU_CALL_SKIP_INSTALL=1 uses the packages at hand instead
# of .whl/ (the test does); PYTHON picks the interpreter (default python3).
set -uo pipefail
start=$SECONDS
[ $# -ge 1 ] || { echo "usage: run.sh OUT_DIR [--budget-s 420] [--smoke] [--steps a,b]" >&2; exit 2; }
out=$1; shift
budget=420; extra=()
while [ $# -gt 0 ]; do
    case $1 in
        --budget-s) budget=${2:?--budget-s needs seconds}; shift 2 ;;
        --smoke) extra+=(--smoke); shift ;;
        --steps) extra+=(--steps "${2:?--steps needs names}"); shift 2 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/../.."
repo=$PWD
PYTHON=${PYTHON:-python3}
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
tee_pid=$!
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DEEPCLUST_NO_PROGRESS=1 TQDM_DISABLE=1  # a short log: summary last
export DEEPCLUST_DATA=${DEEPCLUST_DATA:-$repo/.gpu-data}
# a cache of this call only: DEPICT's target=paper step and N2D reuse the autoencoders pretrained
# by earlier steps, and nothing cached on the machine before counts
cache=$(mktemp -d /tmp/deepclust-cache.XXXXXX)
export DEEPCLUST_CACHE=$cache
trap 'rm -rf "$cache"' EXIT

pythonpath=$repo/src
if [ -z "${GPU_CALL_SKIP_INSTALL:-}" ]; then
    site=$(mktemp -d /tmp/deepclust-site.XXXXXX)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        .whl/*.whl || { echo "error: installing the wheels of .whl/ failed (run prepare.sh, carry .whl)"; exit 3; }
    # ClustPy 0.0.3 is a source archive: its pure-Python package is all DEC/IDEC need
    tar -xzf .whl/clustpy-*.tar.gz -C "$site" --strip-components=1 --wildcards '*/clustpy/*' \
        || echo "warning: no ClustPy sources in .whl/; the ClustPy comparison will record the failure"
    pythonpath=$pythonpath:$site
fi
export PYTHONPATH=$pythonpath${PYTHONPATH:+:$PYTHONPATH}
echo "installed in $((SECONDS - start)) s"

if [[ " ${extra[*]-} " != *" --smoke "* ]]; then
    "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print(torch.cuda.get_device_name(0), 'torch', torch.__version__, 'CUDA', torch.version.cuda)" || exit 4
    nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,temperature.gpu --format=csv || true
fi
left=$((budget - (SECONDS - start)))
# the suite stops itself within its budget; SIGINT then SIGKILL only if it hangs past a grace
timeout --signal=INT --kill-after=15 $((left + 30)) "$PYTHON" benchmarks/gpu/suite.py "$out" --budget-s "$left" \
    ${extra[@]+"${extra[@]}"}
rc=$?
echo "run.sh: $((SECONDS - start)) s in all, suite exit status $rc"
exec >&- 2>&-
wait $tee_pid  # the log is complete before the call returns
exit $rc
