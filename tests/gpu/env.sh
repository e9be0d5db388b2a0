# Sourced by run.sh and quick.sh on the GPU machine: unpacks the bundle ($bundle) and sets up what
# every GPU step uses: LD_LIBRARY_PATH (the bundle's libraries, then the machine's CUDA ones), the
# fixture path the test binaries were built with, $bin, the mpirun command $mpi and step().
tar -C / -xJf "$bundle" || exit 1
[[ -e /work/main ]] || { mkdir -p /work && ln -s "$repo" /work/main; }
export LD_LIBRARY_PATH=/opt/tpserve/lib
for lib in libcublasLt.so.13 libnccl.so.2 libcudart.so.13; do
  found=$(find /usr/local/cuda/lib64/ /usr/local/cuda/lib/ /usr/lib/x86_64-linux-gnu/ /opt/ -name "$lib" 2>/dev/null | head -1)
  [[ -n $found ]] && LD_LIBRARY_PATH+=":$(dirname "$found")"
done
export TPSERVE_SENTENCEPIECE_MODULE=/opt/tpserve/bin/libtpserve_sentencepiece.so
export OPENBLAS_NUM_THREADS=4
bin=/opt/tpserve/bin
mpi=(/usr/bin/orterun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader
     --mca btl_vader_single_copy_mechanism none)
step() { echo; echo "=== $* ($(date +%T))"; }
