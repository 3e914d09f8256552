"""A native CPU kernel for 3x3 stride-1 'same' convolutions (native_conv.cc, AVX-512).

XLA's CPU convolutions run the narrow layers a pruned network is made of at a fraction of their
arithmetic rate on wide ones (8 channels on 32x32 maps: ~32 vs ~90 GMAC/s here), so sliced
models ran far slower than their FLOPs. This kernel runs them at ~100 GMAC/s
(benchmarks/results/surgery_speed.md). It is compiled with the system C++ compiler on first use,
into a per-machine cache, and registered as an XLA FFI target; where that is impossible (no
compiler, no AVX-512, not x86-64 Linux) `available()` is False and callers use XLA's convolution.

    JAXDR_NATIVE_CONV=0        never use it (the process-wide switch, read at trace time)
    JAXDR_CACHE_DIR=/path      where the compiled library goes (default ~/.cache/jaxdr)
    CXX=clang++                the compiler (default g++)
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from typing import Iterator

import jax
import jax.numpy as jnp
from absl import logging

SOURCE = os.path.join(os.path.dirname(__file__), "native_conv.cc")
TARGET = "jaxdr_conv3x3"
ENV_SWITCH = "JAXDR_NATIVE_CONV"
# Measured (benchmarks/results/surgery_speed.md): at batch 1, 8x8 maps with 256 channels run
# at half XLA's speed, 4x4 at a third; from 32x32 at batch 1, or 8x8 at batch 128, at or above.
MIN_WIDTH = 8
MIN_PIXELS = 512


def enabled() -> bool:
  """The process-wide switch: False when JAXDR_NATIVE_CONV is '0' (or 'false', 'off')."""
  return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def _cpu_flags() -> Iterator[str]:
  """The CPU's model and feature lines of /proc/cpuinfo (what -march=native compiles for)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith(("flags", "model name")):
          yield line.strip()
  except OSError:
    return


def _build(cache_dir: str) -> str:
  """Compiles SOURCE for this machine (once per source, compiler, jaxlib and CPU) and returns
  the shared library's path. Concurrent processes each build to a temporary name and rename."""
  cxx = os.environ.get("CXX", "g++")
  if shutil.which(cxx) is None:
    raise RuntimeError(f"no C++ compiler ({cxx!r} not on PATH; apt-get install -y g++)")
  include = jax.ffi.include_dir()
  flags = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{include}"]
  with open(SOURCE, "rb") as f:
    source = f.read()
  version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
  key = hashlib.sha256(b"\0".join(
      [source, cxx.encode(), version.encode(), " ".join(flags).encode(), jax.__version__.encode(),
       "\n".join(_cpu_flags()).encode()])).hexdigest()[:16]
  path = os.path.join(cache_dir, f"native_conv-{key}.so")
  if os.path.exists(path):
    return path
  os.makedirs(cache_dir, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache_dir)
  os.close(fd)
  try:
    proc = subprocess.run([cxx, *flags, SOURCE, "-o", tmp], capture_output=True, text=True)
    if proc.returncode:
      last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
      raise RuntimeError(f"{cxx} failed: {last}")
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


@functools.cache
def _load() -> str | None:
  """Builds and registers the FFI target; None on success, else why it is unavailable."""
  if platform.system() != "Linux" or platform.machine() != "x86_64":
    return f"not x86-64 Linux ({platform.system()} {platform.machine()})"
  if not any(" avx512f " in f" {line} " for line in _cpu_flags()):
    return "the CPU has no AVX-512"
  cache_dir = os.environ.get("JAXDR_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxdr"))
  try:
    lib = ctypes.cdll.LoadLibrary(_build(cache_dir))
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.JaxdrConv3x3), platform="cpu")
  except (OSError, RuntimeError) as e:
    logging.warning("jaxdr native conv unavailable, using XLA's: %s", e)
    return str(e)
  return None


def available() -> bool:
  """Whether `conv3x3` can run here: the switch is on and the kernel built and registered."""
  return enabled() and _load() is None


def unavailable_reason() -> str | None:
  """None when `available()`, else one line saying why not."""
  if not enabled():
    return f"{ENV_SWITCH}=0"
  return _load()


def applies(x, kernel, stride: int, padding: int, groups: int) -> bool:
  """Whether 'auto' should use the kernel: 3x3, stride 1, padding 1, dense, float32, on CPU,
  with maps >= MIN_WIDTH wide and >= MIN_PIXELS pixels in the batch (below that, each call
  rereads all weights for a few pixels and XLA's conv is as fast or faster)."""
  return (kernel.shape[:2] == (3, 3) and (stride, padding, groups) == (1, 1, 1)
          and x.ndim == 4 and x.dtype == jnp.float32 and kernel.dtype == jnp.float32
          and x.shape[2] >= MIN_WIDTH and x.shape[0] * x.shape[1] * x.shape[2] >= MIN_PIXELS
          and jax.default_backend() == "cpu" and available())


def _pack(kernel):
  """HWIO [3, 3, Cin, Cout] -> the kernel's flat weight layout (native_conv.cc, PlanBlocks):
  per block of output channels, [9 taps][steps][16 lanes]. Blocks of 16 channels (steps: input
  channels; lane j: channel j) while more than 8 are left, then one paired block (steps: input
  channel pairs, Cin padded to even; lane 2j + e: input channel 2 step + e, output channel j).
  Done by XLA, so frozen weights pack once per compiled loop, not per call."""
  _, _, cin, cout = kernel.shape
  k9 = kernel.reshape(9, cin, cout)
  parts, co0 = [], 0
  while co0 < cout:
    nco = cout - co0 if cout - co0 <= 8 else min(16, cout - co0)
    kb = k9[:, :, co0:co0 + nco]
    if cout - co0 <= 8:
      kb = jnp.pad(kb, ((0, 0), (0, cin % 2), (0, 0)))
      kb = kb.reshape(9, -1, 2, nco).transpose(0, 1, 3, 2).reshape(9, -1, 2 * nco)
    parts.append(jnp.pad(kb, ((0, 0), (0, 0), (0, 16 - kb.shape[-1]))).reshape(-1))
    co0 += nco
  return jnp.concatenate(parts)


@jax.custom_batching.custom_vmap
def _call(x, kernel):
  reason = _load()
  if reason is not None:
    raise RuntimeError(f"jaxdr native conv unavailable: {reason}")
  out = jax.ShapeDtypeStruct(x.shape[:3] + kernel.shape[3:], x.dtype)
  return jax.ffi.ffi_call(TARGET, out)(x, _pack(kernel))


@_call.def_vmap
def _call_vmap(axis_size, in_batched, x, kernel):
  """A vmapped input folds into the batch (one call); vmapped kernels run one call each."""
  x_batched, kernel_batched = in_batched
  if kernel_batched:
    if not x_batched:
      x = jnp.broadcast_to(x, (axis_size,) + x.shape)
    return jax.lax.map(lambda args: _call(*args), (x, kernel)), True
  y = _call(x.reshape((-1,) + x.shape[2:]), kernel)
  return y.reshape(x.shape[:2] + y.shape[1:]), True


@jax.custom_vjp
def conv3x3(x, kernel):
  """x [N, H, W, Cin] (*) kernel [3, 3, Cin, Cout] -> [N, H, W, Cout], stride 1, zero padding 1.
  Reverse-mode differentiable: the input gradient is the same kernel on the flipped,
  transposed weights; the kernel gradient is XLA's. Check `applies` first."""
  return _call(x, kernel)


def _conv3x3_fwd(x, kernel):
  return _call(x, kernel), (x, kernel)


def _conv3x3_bwd(res, g):
  from jaxdr.models import layers  # pylint: disable=g-import-not-at-top  (layers imports this module)
  x, kernel = res
  dx = _call(g, layers._flipped_transposed(kernel))
  return dx, layers._stride1_kernel_grad(x, kernel, g, 1)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)
