"""CDRP gate-fitting throughput: batched JAX (vmap in one jit) vs one image at a time vs PyTorch.

Same architecture (VGG-16 for 32x32x3 inputs, 10 classes, as DRNet Table 1; ``--width``
shrinks it) and the same weights: the JAX variables are copied into an equivalent torch
module, whose logits are checked against JAX's. Every variant runs the same CDRP fit
(T steps of SGD with momentum on KL + gamma*L1, clip to [0, 10], top-1 reset):

  jax batched     cdrp.make_fitter at batch B, for each loop mode (scan / scan unrolled /
                  fori / python-driven)
  jax one image   the same fitter at batch 1, image after image
  torch one image the papers' way: per image, gates as parameters, T optimizer steps
  torch batched   gates [B, C] for the whole batch, loss summed over images

Efficiency = T x time(one gated forward+backward w.r.t. the gates per image at batch 128)
/ measured time per image of the fastest batched JAX fit: how close the fit loop comes to
the cost of its T gradient evaluations. Run by hand; writes a markdown table:

    python benchmarks/cdrp_speed.py [--batch=128] [--out=benchmarks/results/cdrp_speed.md]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from jaxdr import cpu_runtime, models, ops  # noqa: E402
from jaxdr.methods.drnet import cdrp  # noqa: E402
from jaxdr.models import vgg  # noqa: E402


def _block(tree):
  return jax.tree.map(lambda a: a.block_until_ready(), tree)


def compile_jax(model, variables, images, options):
  """(fit, first-call seconds: compile + one run)."""
  fit = cdrp.make_fitter(model, options)
  t = time.perf_counter()
  _block(fit(variables, images))
  return fit, time.perf_counter() - t


def timed(fn):
  """(seconds, result) of one call."""
  t = time.perf_counter()
  out = fn()
  return time.perf_counter() - t, out


def time_gated_fwd_bwd(model, variables, images, gamma):
  """One gated forward+backward w.r.t. [B, C] gates (what each CDRP step costs). Weights
  and images are arguments, not constants XLA could fold."""
  graph = models.describe(model)
  target = jax.nn.log_softmax(models.apply(model, variables, images))

  @jax.jit
  def grad(gates, variables, images, target):
    def loss(g):
      logp = jax.nn.log_softmax(models.apply(model, variables, images, g))
      kl = jnp.sum(jnp.exp(target) * (target - logp))
      return kl + gamma * sum(jnp.abs(v).sum() for v in g.values())
    return jax.grad(loss)(gates)
  gates = {g.key: jnp.ones((images.shape[0], g.channels)) for g in graph.gates}
  _block(grad(gates, variables, images, target))
  times = []
  for _ in range(3):
    t = time.perf_counter()
    _block(grad(gates, variables, images, target))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


# ----------------------------------------------------------------------------- torch reference


def torch_vgg(model, variables):
  """A torch VGG equal to jaxdr's (conv3x3+bias+BN+ReLU+gate, ceil-mode max-pool, mean, linear)."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  class TorchVGG(nn.Module):
    def __init__(self):
      super().__init__()
      self.convs, self.bns, self.pool_after = nn.ModuleList(), nn.ModuleList(), []
      cin, i = model.input_channels, 0
      for v in model.cfg:
        if v == "M":
          self.pool_after[-1] = True
          continue
        p = variables["params"][f"conv{i}"]
        s = variables["batch_stats"][f"conv{i}"]["bn"]
        cout = p["kernel"].shape[-1]
        conv = nn.Conv2d(cin, cout, 3, padding=1)
        conv.weight.data = torch.from_numpy(np.asarray(p["kernel"]).transpose(3, 2, 0, 1).copy())
        conv.bias.data = torch.from_numpy(np.asarray(p["bias"]).copy())
        bn = nn.BatchNorm2d(cout, eps=1e-5)
        bn.weight.data = torch.from_numpy(np.asarray(p["bn"]["scale"]).copy())
        bn.bias.data = torch.from_numpy(np.asarray(p["bn"]["bias"]).copy())
        bn.running_mean.data = torch.from_numpy(np.asarray(s["mean"]).copy())
        bn.running_var.data = torch.from_numpy(np.asarray(s["var"]).copy())
        self.convs.append(conv)
        self.bns.append(bn)
        self.pool_after.append(False)
        cin, i = cout, i + 1
      d = variables["params"]["classifier"]["dense"]
      self.fc = nn.Linear(cin, d["kernel"].shape[-1])
      self.fc.weight.data = torch.from_numpy(np.asarray(d["kernel"]).T.copy())
      self.fc.bias.data = torch.from_numpy(np.asarray(d["bias"]).copy())

    def forward(self, x, gates=None):  # x NCHW; gates: list of [B, C] or [C]
      for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
        x = torch.relu(bn(conv(x)))
        if gates is not None:
          g = gates[i]
          x = x * (g[:, :, None, None] if g.dim() == 2 else g[None, :, None, None])
        if self.pool_after[i]:
          x = nn.functional.max_pool2d(x, 2, ceil_mode=True)
      return self.fc(x.mean(dim=(2, 3)))

  net = TorchVGG().eval()
  for p in net.parameters():
    p.requires_grad_(False)
  return net


def torch_fit(net, x, options, batched: bool):
  """CDRP for images x [B, C, H, W]: all at once (batched) or the papers' one image at a time."""
  import torch  # pylint: disable=g-import-not-at-top
  widths = [c.out_channels for c in net.convs]

  def fit(xb):
    with torch.no_grad():
      target = torch.log_softmax(net(xb), -1)
    gates = [torch.ones(xb.shape[0], c, requires_grad=True) for c in widths]
    opt = torch.optim.SGD(gates, lr=options.learning_rate, momentum=options.momentum)
    for _ in range(options.steps):
      opt.zero_grad()
      logp = torch.log_softmax(net(xb, gates), -1)
      kl = torch.sum(target.exp() * (target - logp))
      loss = kl + options.gamma * sum(g.abs().sum() for g in gates)
      loss.backward()
      opt.step()
      with torch.no_grad():
        for g in gates:
          g.clamp_(options.clip_min, options.clip_max)
    with torch.no_grad():
      changed = net(xb, gates).argmax(-1) != target.argmax(-1)
      for g in gates:
        g[changed] = 1.0
    return [g.detach() for g in gates]

  if batched:
    return fit(x)
  outs = [fit(x[i:i + 1]) for i in range(x.shape[0])]
  return [torch.cat([o[k] for o in outs]) for k in range(len(widths))]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128, help="images fitted at once")
  parser.add_argument("--one_image_count", type=int, default=8, help="images for the one-at-a-time runs")
  parser.add_argument("--width", type=float, default=1.0, help="VGG-16 width multiplier")
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--loops", default="scan:1,scan:30,fori:1,python:1",
                      help="batched JAX loop modes to time, as loop:unroll")
  parser.add_argument("--rounds", type=int, default=3, help="timed runs of every variant, alternating")
  parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
  parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "results", "cdrp_speed.md"))
  parser.add_argument("--allocator", default="tcmalloc", choices=cpu_runtime.ALLOCATORS,
                      help="memory allocator (jaxdr/cpu_runtime.py)")
  parser.add_argument("--xla_cpu_ynn", default="true", choices=("true", "false"),
                      help="XLA CPU YNNPACK fusions (jaxdr/cpu_runtime.py)")
  parser.add_argument("--conv_impl", default="native", choices=ops.CONV_IMPLS,
                      help="how the JAX convs run (jaxdr/ops/conv.py); 'native' = 'auto' plus the "
                           "native kernel where it builds")
  args = parser.parse_args()
  cpu_runtime.ensure_allocator(args.allocator)
  cpu_runtime.set_ynn(args.xla_cpu_ynn == "true")
  import torch  # pylint: disable=g-import-not-at-top
  if args.threads:
    torch.set_num_threads(args.threads)

  load_before = os.getloadavg()
  model = models.create("vgg16", num_classes=10, image_size=32, input_channels=3, width=args.width,
                        conv_impl=args.conv_impl)
  variables = models.init(model, jax.random.PRNGKey(0))
  images = jax.random.normal(jax.random.PRNGKey(1), (args.batch, 32, 32, 3))
  net = torch_vgg(model, variables)
  x_t = torch.from_numpy(np.asarray(images).transpose(0, 3, 1, 2).copy())
  logit_diff = float(np.max(np.abs(net(x_t).detach().numpy() - np.asarray(models.apply(model, variables, images)))))
  base = cdrp.CdrpOptions(steps=args.steps)
  n1 = args.one_image_count

  # Every variant runs once per round, rounds alternate: load bursts from other jobs on the
  # shared CPU hit all variants alike. Rates are medians over rounds (best round alongside).
  variants = {}  # name -> (images per call, callable, compile + first run seconds)
  batched_names = []
  for spec in args.loops.split(","):
    loop, unroll = spec.split(":")
    opts = cdrp.CdrpOptions(steps=args.steps, loop=loop, unroll=int(unroll))
    one_opts = one_opts if batched_names else opts  # one image at a time: the first loop spec
    fit, compile_s = compile_jax(model, variables, images, opts)
    name = f"JAX batched vmap, loop={loop} unroll={unroll} (B={args.batch})"
    variants[name] = (args.batch, lambda fit=fit: _block(fit(variables, images)), compile_s)
    batched_names.append(name)
  one_fit, _ = compile_jax(model, variables, images[:1], one_opts)
  one_name = f"JAX one image at a time, loop={one_opts.loop} unroll={one_opts.unroll}"
  variants[one_name] = (n1, lambda: [_block(one_fit(variables, images[i:i + 1]))[0] for i in range(n1)],
                        None)
  torch_fit(net, x_t[:2], cdrp.CdrpOptions(steps=1), batched=True)  # warm-up
  torch_one_name = "PyTorch one image at a time (the papers' way)"
  variants[torch_one_name] = (n1, lambda: torch_fit(net, x_t[:n1], base, batched=False), None)
  torch_name = f"PyTorch batched gates (B={args.batch})"
  variants[torch_name] = (args.batch, lambda: torch_fit(net, x_t, base, batched=True), None)
  times = {name: [] for name in variants}
  results = {}
  for r in range(args.rounds):
    for name, (_, fn, _) in variants.items():
      seconds, results[name] = timed(fn)
      times[name].append(seconds)
      print(f"round {r + 1}/{args.rounds}: {name}: {seconds:.1f} s", flush=True)
  rate = {name: n / float(np.median(times[name])) for name, (n, _, _) in variants.items()}
  best_rate = {name: n / min(times[name]) for name, (n, _, _) in variants.items()}
  rows = [(name, rate[name], best_rate[name], compile_s) for name, (_, _, compile_s) in variants.items()]
  best_name = max(batched_names, key=lambda k: rate[k])
  seconds = args.batch / rate[best_name]
  jax_gates, one_gates, torch_one = results[best_name][0], results[one_name], results[torch_one_name]

  fwd_bwd = time_gated_fwd_bwd(model, variables, images[:128] if args.batch >= 128 else images, base.gamma)
  limit_per_image = args.steps * fwd_bwd / min(args.batch, 128)
  efficiency = limit_per_image / (seconds / args.batch)
  keys = [g.key for g in models.describe(model).gates]
  gate_diff_torch = max(float(np.max(np.abs(np.asarray(jax_gates[k])[:n1] - torch_one[i].numpy())))
                        for i, k in enumerate(keys))
  gate_diff_single = max(float(np.max(np.abs(np.asarray(jax_gates[k])[i] - np.asarray(one_gates[i][k])[0])))
                         for k in keys for i in range(n1))
  load_after = os.getloadavg()

  lines = [
      "# CDRP gate-fitting throughput",
      "",
      f"VGG-16 (CIFAR size: 32x32x3, 10 classes, width {args.width}), random weights shared by JAX and "
      f"PyTorch (max |logit difference| {logit_diff:.1e}); T = {args.steps} steps of SGD (lr 0.1, "
      "momentum 0.9) on KL + 0.05 L1, clip [0, 10], top-1 reset. "
      f"{args.rounds} rounds of every variant, alternating; images/s is the median round (best "
      "round alongside). `python benchmarks/cdrp_speed.py " + " ".join(sys.argv[1:]) + "`.",
      "",
      f"Machine: {cpu_runtime.cpu_model()}, {os.cpu_count()} CPU cores, conv_impl {args.conv_impl}, jax "
      f"{jax.__version__} ({jax.default_backend()}), torch {torch.__version__} ({torch.get_num_threads()} "
      f"threads), {cpu_runtime.describe()}. Load average before / after: {load_before[0]:.1f} / {load_after[0]:.1f} "
      "(the CPU is shared with other jobs; numbers move with the load).",
      "",
      "| variant | images/s (median) | images/s (best) | compile + first run (s) |",
      "|---|---|---|---|",
  ]
  for name, med_rate, top_rate, comp in rows:
    lines.append(f"| {name} | {med_rate:.2f} | {top_rate:.2f} | {'' if comp is None else f'{comp:.1f}'} |")
  lines += [
      "",
      f"Fastest batched JAX: {best_name}.",
      "",
      "| ratio | medians | bests | target |",
      "|---|---|---|---|",
      f"| batched JAX / batched PyTorch | {rate[best_name] / rate[torch_name]:.2f}x | "
      f"{best_rate[best_name] / best_rate[torch_name]:.2f}x | >= 1.0x |",
      f"| batched JAX / one-image PyTorch | {rate[best_name] / rate[torch_one_name]:.2f}x | "
      f"{best_rate[best_name] / best_rate[torch_one_name]:.2f}x | >= 4x |",
      f"| batched JAX / one-image JAX | {rate[best_name] / rate[one_name]:.2f}x | "
      f"{best_rate[best_name] / best_rate[one_name]:.2f}x | |",
      f"| efficiency: {args.steps} x gated fwd+bwd per image at batch {min(args.batch, 128)} "
      f"({1e3 * fwd_bwd:.0f} ms per batch) / measured time per image | {efficiency:.2f} | | >= 0.8 |",
      "",
      f"Agreement: batched vs one-image JAX gates max |diff| {gate_diff_single:.1e}; JAX vs PyTorch "
      f"one-image gates max |diff| {gate_diff_torch:.1e} (float32, {args.steps} steps).",
      "",
  ]
  text = "\n".join(lines)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
