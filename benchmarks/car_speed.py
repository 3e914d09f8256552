"""CAR scoring speed: all candidates of one layer in one iteration, four ways, in one run.

  * jax parallel      `car.score_removals`: candidates vmap-ed and sharded over the devices,
                      prefix and next-layer pre-activation reused (what CAR runs)
  * jax vmap only     the same without the reuse (full network per candidate, batched)
  * jax sequential    one jitted full-network forward per candidate (a Python loop)
  * torch sequential  the paper's way: one full forward per candidate in PyTorch (CPU)

for LeNet-5 (28x28x1: conv1, 20 candidates; conv2, 50) and one VGG-16 layer. The JAX timings
are taken in subprocesses with 1 and 2 forced CPU devices (XLA_FLAGS must be set before jax
is imported) to show the device scaling. Needs torch (a benchmark-only dependency).

    python benchmarks/car_speed.py [--images 500] [--repeats 3] [--out benchmarks/results/car_speed.md]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time

from jaxdr import cpu_runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (name, model, create kwargs, layer, images)
CASES = [
    ("LeNet-5 conv1", "lenet5", dict(num_classes=10, image_size=28, input_channels=1), "conv1", 1.0),
    ("LeNet-5 conv2", "lenet5", dict(num_classes=10, image_size=28, input_channels=1), "conv2", 1.0),
    ("VGG-16 (x0.25, 32x32) conv10", "vgg16", dict(num_classes=10, image_size=32, width=0.25), "conv10", 0.1),
]


def _timeit(fn, repeats):
  fn()  # compile / warm up
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return best


def _case_inputs(arch, kwargs, key, frac, n_images):
  """(model, variables, images x [n, H, W, C], labels y [n], candidates) of one CASES row:
  the same random weights and data for the JAX and the PyTorch timings."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxdr import models  # pylint: disable=g-import-not-at-top
  model = models.create(arch, **kwargs)
  variables = models.init(model, jax.random.PRNGKey(0))
  n = max(8, int(n_images * frac))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, model.image_size, model.image_size, model.input_channels)).astype(np.float32)
  y = rng.integers(0, 10, n).astype(np.int32)
  return model, variables, x, y, models.describe(model).gate(key).channels


def jax_worker(n_images: int, repeats: int) -> dict:
  """Runs in a subprocess with XLA_FLAGS already set: times the JAX variants."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, REPO)
  from jaxdr.methods import car  # pylint: disable=g-import-not-at-top
  out = {"devices": jax.local_device_count(), "cases": {}}
  for name, arch, kw, key, frac in CASES:
    model, variables, x, y, channels = _case_inputs(arch, kw, key, frac, n_images)
    n = len(x)
    removed = [-1] + list(range(channels))
    res = {"images": n, "candidates": channels}
    parallel = functools.partial(car.score_removals, model, variables, x, y, {}, key, removed,
                                 num_classes=10, batch_size=n)
    sequential = functools.partial(car.score_sequential, model, variables, x, y, {}, key, removed,
                                   num_classes=10)
    res["jax_parallel"] = _timeit(parallel, repeats)
    res["jax_vmap_only"] = _timeit(functools.partial(parallel, reuse=False), repeats)
    if out["devices"] == 1:
      res["jax_sequential"] = _timeit(sequential, max(1, repeats - 1))
      par, seq = parallel(), sequential()
      res["parallel_equals_sequential"] = bool(np.array_equal(par.counts, seq.counts))
      res["reference_correct"] = float(par.counts[0].sum())
    out["cases"][name] = res
  return out


def _torch_model(arch, model, variables):
  """The same network in PyTorch (NCHW), fed the JAX weights; forward(x, gate) masks one layer."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from jaxdr import models  # pylint: disable=g-import-not-at-top
  p = variables["params"]
  t = lambda a: torch.from_numpy(np.asarray(a).copy())  # noqa: E731
  conv_w = lambda k: t(np.transpose(np.asarray(k), (3, 2, 0, 1)))  # noqa: E731  HWIO -> OIHW
  if arch == "lenet5":
    w1, b1 = conv_w(p["conv1"]["kernel"]), t(p["conv1"]["bias"])
    w2, b2 = conv_w(p["conv2"]["kernel"]), t(p["conv2"]["bias"])
    c2 = w2.shape[0]
    # JAX flattens (H, W, C); torch would flatten (C, H, W): permute the fc1 rows once.
    f1 = np.asarray(p["fc1"]["dense"]["kernel"]).reshape(4, 4, c2, -1).transpose(2, 0, 1, 3).reshape(16 * c2, -1)
    f1, fb1 = t(f1.T), t(p["fc1"]["dense"]["bias"])
    f2, fb2 = t(np.asarray(p["fc2"]["dense"]["kernel"]).T), t(p["fc2"]["dense"]["bias"])

    def forward(x, key, gate):
      h = F.conv2d(x, w1, b1)
      if key == "conv1":
        h = h * gate.view(1, -1, 1, 1)
      h = F.max_pool2d(h, 2, ceil_mode=True)
      h = F.conv2d(h, w2, b2)
      if key == "conv2":
        h = h * gate.view(1, -1, 1, 1)
      h = F.max_pool2d(h, 2, ceil_mode=True).flatten(1)
      return F.linear(F.relu(F.linear(h, f1, fb1)), f2, fb2)
    return forward
  graph = models.describe(model)
  stats = variables["batch_stats"]
  convs = [(l.key, conv_w(p[l.key]["kernel"]), t(p[l.key]["bias"]), t(p[l.key]["bn"]["scale"]),
            t(p[l.key]["bn"]["bias"]), t(stats[l.key]["bn"]["mean"]), t(stats[l.key]["bn"]["var"]))
           for l in graph.layers if l.kind == "conv"]
  pools = {"conv1", "conv3", "conv6", "conv9", "conv12"}  # a max-pool follows these (VGG16 cfg)
  fw, fb = t(np.asarray(p["classifier"]["dense"]["kernel"]).T), t(p["classifier"]["dense"]["bias"])

  def forward(x, key, gate):
    h = x
    for name, w, b, scale, shift, mean, var in convs:
      h = F.conv2d(h, w, b, padding=1)
      h = F.relu(F.batch_norm(h, mean, var, scale, shift, False, 0.0, 1e-5))
      if name == key:
        h = h * gate.view(1, -1, 1, 1)
      if name in pools:
        h = F.max_pool2d(h, 2, ceil_mode=True)
    return F.linear(h.mean(dim=(2, 3)), fw, fb)
  return forward


def torch_sequential(n_images: int, repeats: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, REPO)
  from jaxdr import models  # pylint: disable=g-import-not-at-top
  out = {"threads": torch.get_num_threads(), "cases": {}}
  for name, arch, kw, key, frac in CASES:
    model, variables, x, y, channels = _case_inputs(arch, kw, key, frac, n_images)
    variables = jax.tree.map(np.asarray, variables)
    forward = _torch_model(arch, model, variables)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(y.astype(np.int64))
    ref = models.apply(model, variables, x)
    with torch.no_grad():
      agree = float(np.abs(forward(xt, key, torch.ones(channels)).numpy() - np.asarray(ref)).max())

    def loop():
      correct = []
      with torch.no_grad():
        for j in [-1] + list(range(channels)):
          gate = torch.ones(channels)
          if j >= 0:
            gate[j] = 0.0
          correct.append(int((forward(xt, key, gate).argmax(1) == yt).sum()))
      return correct
    out["cases"][name] = {"torch_sequential": _timeit(loop, max(1, repeats - 1)),
                          "max_abs_logit_diff_vs_jax": agree, "reference_correct": loop()[0]}
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--images", type=int, default=500, help="scoring images (LeNet; VGG uses a tenth)")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--devices", default="1,2", help="forced CPU device counts for the JAX runs")
  ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "car_speed.md"))
  ap.add_argument("--allocator", default="tcmalloc", choices=cpu_runtime.ALLOCATORS,
                  help="memory allocator (jaxdr/cpu_runtime.py); workers inherit it")
  ap.add_argument("--xla_cpu_ynn", default="true", choices=("true", "false"),
                  help="XLA CPU YNNPACK fusions (jaxdr/cpu_runtime.py); workers inherit it")
  ap.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
  args = ap.parse_args()
  cpu_runtime.ensure_allocator(args.allocator)
  cpu_runtime.set_ynn(args.xla_cpu_ynn == "true")
  if args.worker:
    print("RESULT " + json.dumps(jax_worker(args.images, args.repeats)))
    return
  try:
    devices = [int(d) for d in args.devices.split(",")]
  except ValueError:
    sys.exit(f"car_speed: --devices must be comma-separated integers, got {args.devices!r}")
  runs = {}
  for d in devices:
    flags_ = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={d}".strip()
    env = dict(os.environ, XLA_FLAGS=flags_, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, __file__, "--worker", "1", "--images", str(args.images),
                           "--repeats", str(args.repeats), "--allocator", args.allocator,
                           "--xla_cpu_ynn", args.xla_cpu_ynn], env=env, capture_output=True, text=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not line:
      sys.exit(f"car_speed: JAX worker with {d} device(s) failed: {proc.stderr.strip().splitlines()[-1:]}")
    runs[d] = json.loads(line[0][len("RESULT "):])
    print(f"jax with {d} device(s): done", flush=True)
  torch_res = torch_sequential(args.images, args.repeats)
  print("torch: done", flush=True)

  load = os.getloadavg()
  lines = ["# CAR candidate scoring speed (one greedy iteration: every filter of a layer)\n",
           f"`python benchmarks/car_speed.py --images {args.images} --repeats {args.repeats}` on "
           f"{os.cpu_count()} CPU cores, {cpu_runtime.describe()} (load average {load[0]:.1f} while running: the machine is shared), "
           f"torch {torch_res['threads']} threads. Best of {args.repeats} runs after a warm-up (compile "
           "excluded), seconds per layer.\n",
           "| layer | images | candidates | torch sequential | jax sequential | " +
           " | ".join(f"jax vmap only ({d} dev) | jax parallel ({d} dev)" for d in devices) +
           " | speed-up vs torch (parallel, " + ", ".join(f"{d} dev" for d in devices) + ") |",
           "|" + "---|" * (5 + 2 * len(devices) + 1)]
  for name, *_ in CASES:
    one = runs[devices[0]]["cases"][name]
    tt = torch_res["cases"][name]["torch_sequential"]
    cells = [name, str(one["images"]), str(one["candidates"] + 1), f"{tt:.3f}", f"{one['jax_sequential']:.3f}"]
    for d in devices:
      r = runs[d]["cases"][name]
      cells += [f"{r['jax_vmap_only']:.3f}", f"{r['jax_parallel']:.3f}"]
    cells.append(", ".join(f"{tt / runs[d]['cases'][name]['jax_parallel']:.1f}x" for d in devices))
    lines.append("| " + " | ".join(cells) + " |")
  lines.append("")
  lines.append("Checks: parallel scores == sequential scores (1 device): " + ", ".join(
      f"{n}: {runs[devices[0]]['cases'][n]['parallel_equals_sequential']}" for n, *_ in CASES) +
      "; torch vs jax max |logit difference|: " + ", ".join(
      f"{n}: {torch_res['cases'][n]['max_abs_logit_diff_vs_jax']:.1e}" for n, *_ in CASES) +
      "; reference correct counts jax/torch: " + ", ".join(
      f"{runs[devices[0]]['cases'][n]['reference_correct']:.0f}/{torch_res['cases'][n]['reference_correct']}"
      for n, *_ in CASES) + ".\n")
  lines.append("Device scaling: forced CPU devices share the machine's cores, and one XLA CPU device already "
               "uses all of them (intra-op threads), so extra forced devices only show scaling where each "
               "device has its own cores or accelerator.\n")
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    f.write("\n".join(lines))
  print("\n".join(lines))


if __name__ == "__main__":
  main()
