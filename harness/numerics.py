"""The numerics pin: the same data bytes from one seed on any x86-64 CPU with AVX2 and FMA.

Why: PyTorch's CPU wheel computes every float32 matrix product with Intel MKL, which picks its
kernel by CPU vendor, and not only by instruction set: on an AMD Zen it runs Zen-specific sgemm
kernels even in MKL's reproducibility modes (``MKL_CBWR=COMPATIBLE`` on an AMD EPYC and on an
Intel Xeon gave different cheetah-dir buffers: best test returns 1092.35 / 1144.09 against
1026.08 / 1099.67), so no MKL setting makes an Intel CPU produce AMD bytes or the reverse. The
data generator's products are therefore computed by numpy's bundled OpenBLAS with one kernel
pinned on every CPU: ``OPENBLAS_CORETYPE=Haswell`` (AVX2 + FMA; OpenBLAS's Zen cores run the
same kernels), one thread; its ``tanh``, ``exp`` and ``sqrt`` avoid MKL too
(``harness.collect.portable``). PyTorch's own vectorised kernels run at one width on every CPU,
``ATEN_CPU_CAPABILITY=avx2``: at AVX-512 width its ``expm1``/``exp2`` round a rare input
differently (a tiny walker build changed), at AVX2 width they do not depend on the CPU.

OpenBLAS reads ``OPENBLAS_CORETYPE`` once, when numpy is first imported, and PyTorch reads
``ATEN_CPU_CAPABILITY`` at its first operation, so :func:`pin` runs on ``import harness``,
before the harness imports either, and every data build checks that what took effect is the pin
(:func:`check`: ``threadpoolctl`` for OpenBLAS's kernel, ``torch.backends.cpu`` for PyTorch's).
Training still runs MKL's fastest products; its element-wise kernels run at AVX2 width.
"""

from __future__ import annotations

import os

PIN: dict[str, str] = {
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "avx2",
}
"""The environment every process that builds data runs under (recorded in the manifest)."""
GEMM = "numpy-openblas"


class NumericsError(RuntimeError):
    """The environment contradicts the numerics pin: building would give foreign bytes."""


def pin() -> None:
    """Set the pin's variables where the caller has not set them (a caller's different value is
    kept, and :func:`check` refuses to build data under it)."""
    for name, value in PIN.items():
        os.environ.setdefault(name, value)


def record() -> dict[str, str]:
    """What the manifest records of the pin (part of the dataset's identity)."""
    return {
        "gemm": GEMM,
        "openblas_coretype": PIN["OPENBLAS_CORETYPE"],
        "aten_cpu_capability": PIN["ATEN_CPU_CAPABILITY"],
    }


def check() -> None:
    """Refuse, in one line, to build data under anything but the pinned kernel."""
    for name, value in PIN.items():
        got = os.environ.get(name)
        if got is not None and got.lower() != value.lower():
            raise NumericsError(
                f"{name}={got} contradicts the data pin ({name}={value}); unset it to build data"
            )
    import torch
    from threadpoolctl import threadpool_info

    capability = torch.backends.cpu.get_cpu_capability()
    if capability.lower() != PIN["ATEN_CPU_CAPABILITY"]:
        raise NumericsError(
            f"PyTorch runs its {capability} kernels, not the pinned "
            f"{PIN['ATEN_CPU_CAPABILITY'].upper()} ones: ATEN_CPU_CAPABILITY must be set before "
            "PyTorch's first operation (`python -m harness` does it; in a script, "
            "`import harness` first), and the CPU needs AVX2"
        )

    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    numpy_blas = [i for i in blas if "numpy" in str(i.get("filepath", "")).lower()] or blas
    if not numpy_blas:
        raise NumericsError("numpy has no BLAS library loaded; the data pin needs numpy's OpenBLAS")
    info = numpy_blas[0]
    if info.get("internal_api") != "openblas":
        raise NumericsError(
            f"numpy computes with {info.get('internal_api')}, not OpenBLAS: the data pin needs "
            "numpy's PyPI wheel (its bundled OpenBLAS)"
        )
    arch = str(info.get("architecture", ""))
    if arch.lower() != PIN["OPENBLAS_CORETYPE"].lower():
        raise NumericsError(
            f"numpy's OpenBLAS runs its {arch or 'unknown'} kernels, not the pinned "
            f"{PIN['OPENBLAS_CORETYPE']} ones: OPENBLAS_CORETYPE must be set before numpy is "
            "first imported (`python -m harness` does it; in a script, `import harness` first), "
            "and the CPU needs AVX2 and FMA"
        )
