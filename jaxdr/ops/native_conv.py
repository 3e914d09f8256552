"""An opt-in native CPU kernel for 3x3 stride-1 'same' convolutions (native_conv.cc, AVX-512).

XLA's CPU convolutions run the narrow layers a pruned network is made of at a fraction of their
arithmetic rate on wide ones, so sliced models ran far slower than their FLOPs; this kernel
runs them near the wide-layer rate (benchmarks/results/surgery_speed.md).

It is used only by ``conv_impl='native'``, and only after `load()` ran outside any trace:
`load()` compiles native_conv.cc with the system C++ compiler (once per source, compiler,
jaxlib and CPU, into a per-machine cache) and registers it as an XLA FFI target.
``jaxdr.models.create(..., conv_impl='native')`` calls it; scripts that call `jaxdr.ops.conv2d`
themselves call it first. At trace time `jaxdr.ops.conv2d` only reads `ready()`: nothing is
compiled or written while JAX traces. Where the kernel cannot run (not x86-64 Linux, no
AVX-512, no compiler, the switch off), `load()` logs why once and 'native' runs as 'auto'.

    JAXDR_NATIVE_CONV=0        never use it (the process-wide switch)
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
from typing import List, Optional

import jax
import jax.numpy as jnp
from absl import logging

from jaxdr.ops import xla_conv

SOURCE = os.path.join(os.path.dirname(__file__), "native_conv.cc")
TARGET = "jaxdr_conv3x3"
ENV_SWITCH = "JAXDR_NATIVE_CONV"
# Measured (benchmarks/results/surgery_speed.md): at batch 1, 8x8 maps with 256 channels run
# at half XLA's speed, 4x4 at a third; from 32x32 at batch 1, or 8x8 at batch 128, at or above.
# 6x6 / 7x7 maps at batch 128: faster alone, not inside whole networks
# (benchmarks/results/conv_speed_small_maps.md).
MIN_WIDTH = 8
MIN_PIXELS = 512

_loaded = False                 # load() registered the FFI target in this process
_failure: Optional[str] = None  # why load()'s build or registration failed
_warned: set = set()            # reasons already logged


def enabled() -> bool:
  """The process-wide switch: False when JAXDR_NATIVE_CONV is '0' (or 'false', 'off', 'no')."""
  return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def cpu_flags() -> List[str]:
  """The CPU's model and feature lines of /proc/cpuinfo (what -march=native compiles for);
  empty where there is no /proc/cpuinfo."""
  try:
    with open("/proc/cpuinfo") as f:
      return [line.strip() for line in f if line.startswith(("flags", "model name"))]
  except OSError:
    return []


def has_avx512() -> bool:
  return any(" avx512f " in f" {line} " for line in cpu_flags())


def compiler() -> str:
  """The C++ compiler `load()` builds with ($CXX, default g++)."""
  return os.environ.get("CXX", "g++")


def _build(cache_dir: str) -> str:
  """Compiles SOURCE for this machine (once per source, compiler, jaxlib and CPU) and returns
  the shared library's path. Concurrent processes each build to a temporary name and rename."""
  cxx = compiler()
  if shutil.which(cxx) is None:
    raise RuntimeError(f"no C++ compiler ({cxx!r} not on PATH; apt-get install -y g++)")
  include = jax.ffi.include_dir()
  flags = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{include}"]
  with open(SOURCE, "rb") as f:
    source = f.read()
  version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
  key = hashlib.sha256(b"\0".join(
      [source, cxx.encode(), version.encode(), " ".join(flags).encode(), jax.__version__.encode(),
       "\n".join(cpu_flags()).encode()])).hexdigest()[:16]
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
def _build_and_register() -> Optional[str]:
  """Builds and registers the FFI target once per process; None on success, else why not."""
  cache_dir = os.environ.get("JAXDR_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "jaxdr"))
  try:
    lib = ctypes.cdll.LoadLibrary(_build(cache_dir))
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.JaxdrConv3x3), platform="cpu")
  except (OSError, RuntimeError) as e:
    return str(e)
  return None


def unavailable_reason() -> Optional[str]:
  """Why the kernel cannot run here without building it (None: it may): the switch, the
  platform, the CPU's AVX-512, the compiler; or a failed earlier `load()`."""
  if not enabled():
    return f"{ENV_SWITCH}=0"
  if platform.system() != "Linux" or platform.machine() != "x86_64":
    return f"not x86-64 Linux ({platform.system()} {platform.machine()})"
  if not has_avx512():
    return "the CPU has no AVX-512 (avx512f)"
  if not _loaded and shutil.which(compiler()) is None:
    return f"no C++ compiler ({compiler()!r} not on PATH; apt-get install -y g++)"
  return None if _loaded else _failure


def _warn_once(reason: str) -> None:
  if reason not in _warned:
    _warned.add(reason)
    logging.warning("jaxdr native conv kernel unavailable (%s): conv_impl 'native' runs as 'auto'", reason)


def load() -> bool:
  """Builds (or finds in the cache) and registers the kernel; True when `conv3x3` can run.
  Call it outside any trace: ``models.create(..., conv_impl='native')`` does. Where the
  kernel cannot run, logs why (once per reason) and returns False."""
  global _loaded, _failure
  reason = unavailable_reason()
  if reason is None and not _loaded:
    reason = _failure = _build_and_register()
    _loaded = reason is None
  if reason is not None:
    _warn_once(reason)
    return False
  return True


def ready() -> bool:
  """Whether `conv3x3` can run now: `load()` succeeded and the switch is on. Builds nothing
  (what the conv dispatcher reads at trace time)."""
  return _loaded and enabled()


def warn_not_ready() -> None:
  """Logs once why conv_impl 'native' traced without the kernel (called at trace time)."""
  _warn_once(unavailable_reason() or "jaxdr.ops.native_conv.load() was not called before tracing")


def applies(x, kernel, stride: int, padding: int, groups: int) -> bool:
  """Whether the kernel fits this conv: 3x3, stride 1, padding 1, dense, float32, on CPU,
  with maps >= MIN_WIDTH wide and >= MIN_PIXELS pixels in the batch (below that, each call
  rereads all weights for a few pixels and XLA's conv is as fast or faster). Whether it is
  loaded is `ready()`."""
  return (kernel.shape[:2] == (3, 3) and (stride, padding, groups) == (1, 1, 1)
          and x.ndim == 4 and x.dtype == jnp.float32 and kernel.dtype == jnp.float32
          and x.shape[2] >= MIN_WIDTH and x.shape[0] * x.shape[1] * x.shape[2] >= MIN_PIXELS
          and jax.default_backend() == "cpu")


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
  if not _loaded:
    raise RuntimeError("jaxdr native conv kernel not loaded: call jaxdr.ops.native_conv.load() "
                       "outside the trace first")
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
  transposed weights; the kernel gradient is XLA's. Needs `load()` first."""
  return _call(x, kernel)


def _conv3x3_fwd(x, kernel):
  return _call(x, kernel), (x, kernel)


def _conv3x3_bwd(res, g):
  x, kernel = res
  dx = _call(g, xla_conv.flipped_transposed(kernel))
  return dx, xla_conv.stride1_kernel_grad(x, kernel, g, 1)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)
