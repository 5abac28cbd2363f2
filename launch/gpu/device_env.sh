# Sourced by launch/gpu/run_on_device.sh after launch/gpu/unpack_bundle.sh: the environment that
# makes the unpacked bundle ($root) the machine's build dependencies, the python with CUDA torch
# (plus the bundle's wheels it lacks, such as diffusers) and the CUDA toolkit. Uses $repo, $root,
# $bundle, $logs and say(); sets and exports PATH, LD_LIBRARY_PATH, PKG_CONFIG_PATH,
# CMAKE_PREFIX_PATH, <Pkg>_ROOT, OPAL_PREFIX/PMIX_* (relocated Open MPI 4.1 / PMIx), OMPI_MCA_* as
# Debian's /etc/openmpi sets them, SDTRAIN_PYTHON, PYTHONPATH, CUDA_HOME; sets $python and
# $cuda_extra (CMake arguments). Returns non-zero when the unpacked bundle does not run.
# Environment: SDTRAIN_PYTHON (default python3, else /opt/torch/.venv/bin/python3), SDTRAIN_SITE
# (where missing wheels go, default /tmp/site), CUDA_HOME (default /usr/local/cuda).
lib=$root/usr/lib/x86_64-linux-gnu
export PATH=$root/usr/bin:$PATH
export LD_LIBRARY_PATH=$lib:$lib/openmpi/lib:$lib/pmix2/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_PATH=$root/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export CMAKE_PREFIX_PATH=$root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
export Protobuf_ROOT=$root/usr Boost_ROOT=$root/usr OPENSSL_ROOT_DIR=$root/usr MPI_HOME=$root/usr
# A relocated Open MPI finds its components, help files and wrapper data through OPAL_PREFIX; PMIx
# its components through PMIX_PKGLIBDIR (PMIX_PREFIX alone does not move them).
export OPAL_PREFIX=$root/usr PMIX_PREFIX=$lib/pmix2 PMIX_PKGLIBDIR=$lib/pmix2/lib/pmix
# What Debian's /etc/openmpi/openmpi-mca-params.conf sets (that file is not there).
export OMPI_MCA_btl_base_warn_component_unused=${OMPI_MCA_btl_base_warn_component_unused:-0}
export OMPI_MCA_mtl=${OMPI_MCA_mtl:-^ofi} OMPI_MCA_btl=${OMPI_MCA_btl:-^uct,openib,ofi}
export OMPI_MCA_pml=${OMPI_MCA_pml:-^ucx} OMPI_MCA_osc=${OMPI_MCA_osc:-^ucx,pt2pt}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
{ protoc --version && mpirun --version | head -1 && mpicxx -showme && pkg-config --version &&
  pkg-config --cflags --libs libwebp; } >"$logs/bundle-env.txt" 2>&1 || { cat "$logs/bundle-env.txt" >&2; say "the unpacked bundle does not run"; return 1; }
cat "$logs/bundle-env.txt" >&2

python=${SDTRAIN_PYTHON:-python3}
if [[ -z ${SDTRAIN_PYTHON:-} ]] && ! "$python" -c 'import torch' 2>/dev/null && [[ -x /opt/torch/.venv/bin/python3 ]]; then
  python=/opt/torch/.venv/bin/python3
fi
python=$(command -v "$python")
export SDTRAIN_PYTHON=$python
# Wheels: only those whose distribution this python lacks (never shadow its own packages).
site=${SDTRAIN_SITE:-/tmp/site}
missing=()
for wheel in "$bundle"/wheels/*.whl; do
  dist=$(basename "$wheel" | cut -d- -f1)
  PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} "$python" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$dist" 2>/dev/null ||
    missing+=("$wheel")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  say "installing into $site: $(for w in "${missing[@]}"; do basename "$w" | cut -d- -f1-2; done | tr '\n' ' ')"
  mkdir -p "$site"
  if ! "$python" -m pip install -q --no-index --no-deps --target "$site" "${missing[@]}" 2>"$logs/pip.log"; then
    say "pip failed (see pip.log); unzipping the wheels instead"
    for wheel in "${missing[@]}"; do "$python" -m zipfile -e "$wheel" "$site"; done
  fi
fi
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
"$python" -c 'import diffusers; print("diffusers", diffusers.__version__, "from", diffusers.__file__)' >&2 ||
  say "warning: diffusers does not import; the bench stages will fail"

# The CUDA toolkit (nvcc and headers, for torch's CMake config).
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export CUDAToolkit_ROOT=$CUDA_HOME CUDACXX=$CUDA_HOME/bin/nvcc PATH=$PATH:$CUDA_HOME/bin
mapfile -t cuda_extra < <(bash "$repo/launch/nvrtc_cmake_args.sh" "$python" "$CUDA_HOME")
