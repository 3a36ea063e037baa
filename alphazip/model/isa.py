"""Environment settings under which torch, oneDNN and MKL act as another kind of CPU.

Each library picks its kernels (and with them a float sum's order) from the instruction set it
finds, and each lets the environment lower it. Packing under one setting and unpacking under
another is how one machine checks that an archive decodes on other CPUs; the variables must be
set before the process imports torch.
"""

ISA_SETTINGS = {
    "native": {},  # whatever this CPU has (AVX-512, VNNI and AMX on a recent Xeon)
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
# Force the integer products onto float32 pieces, or onto the compiled kernel, instead of
# torch._int_mm (all three must agree).
FORCE_FLOAT_PRODUCTS = {"ALPHAZIP_INT_MM": "float32"}
FORCE_KERNEL_PRODUCTS = {"ALPHAZIP_INT_MM": "kernel"}
