/* Lets the oneMKL statically linked into libtorch_cpu.so take its AVX2 / AVX-512 code paths on x86-64 CPUs
 * that are not Intel's. MKL decides between its generic ("def") kernels and the ISA-specific ones in
 * __detect_real_cpu, which first asks mkl_serv_intel_cpu_true() whether the vendor is Intel; only then does it
 * look at the CPUID feature bits. libtorch_cpu.so calls that function through its PLT, so a definition earlier
 * in the lookup order takes its place. On an Intel CPU the real function returns 1 as well: nothing changes.
 *
 * Getting earlier in the lookup order: TorchSharp dlopens libtorch_cpu.so itself (RTLD_LAZY, not global), so
 * the library comes first in its own lookup scope and a NEEDED entry can never precede it. Only the global
 * scope does. This library is a NEEDED dependency of the output's libc10.so (loaded, and initialised, before
 * libtorch_cpu.so runs anything); its constructor reopens it RTLD_GLOBAL, which adds it to the global scope.
 * libtorch_cpu.so's PLT slot is bound lazily at MKL's first CPU detection, i.e. after that, so it binds here.
 * (With LD_BIND_NOW the slot is bound before the constructor runs and MKL keeps its own vendor check.)
 * Hand-written because no library provides this; see docs/benchmarks-training.md §9 for what it changes. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

__attribute__((visibility("default"))) int mkl_serv_intel_cpu_true(void)
{
    return 1;
}

static void onnxlora_mkl_cpu_promote(void);

__attribute__((constructor)) static void onnxlora_mkl_cpu_promote(void)
{
    /* The address of a static function: the exported one above may itself be bound to libtorch_cpu.so's. */
    Dl_info info;
    if (dladdr((void *)&onnxlora_mkl_cpu_promote, &info) && info.dli_fname != NULL)
    {
        dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_GLOBAL);
    }
}
