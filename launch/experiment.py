"""Create a TPU VM, install jaxdr, run a config (or a --sweep) on all hosts, delete the VM.

  python -m launch.experiment --name=jaxdr --accelerator_type=v4-32 --repo=. \
      --config=configs/quickstart.py --workdir=gs://BUCKET/jaxdr/qs --dry_run

The VM is deleted at the end, also when a step fails, unless --keep.
"""
from absl import app

from launch import common, tpu_vm

FLAGS = common.FLAGS
common.declare("name", "zone", "accelerator_type", "runtime_version", "project", "spot", "repo",
               "extras", "apt_packages", "config", "workdir", "set", "sweep", "keep", "dry_run")


def build():
  """(setup and run commands, delete commands); all flag errors are raised here, up front."""
  tpu = common.tpu_from_flags()
  overrides = tpu_vm.parse_overrides(FLAGS.set)
  if FLAGS.sweep:
    runs = tpu_vm.sweep_commands(tpu, FLAGS.config, FLAGS.workdir, FLAGS.sweep, overrides)
  else:
    runs = tpu_vm.run_commands(tpu, FLAGS.config, FLAGS.workdir, overrides)
  setup = tpu_vm.create_commands(tpu) + tpu_vm.install_commands(
      tpu, FLAGS.repo, FLAGS.extras, FLAGS.apt_packages)
  return setup + runs, ([] if FLAGS.keep else tpu_vm.delete_commands(tpu))


def main(argv):
  if len(argv) > 1:
    raise SystemExit(f"error: unexpected arguments {argv[1:]}")
  try:
    steps, cleanup = build()
  except (ValueError, OSError) as e:
    raise SystemExit(f"error: {e}") from None
  failure = None
  try:
    common.execute(steps, FLAGS.dry_run)
  except SystemExit as e:
    failure = e  # still delete the VM, then report the step that failed
  try:
    common.execute(cleanup, FLAGS.dry_run)
  except SystemExit as e:
    failure = failure or e
  if failure:
    raise failure


if __name__ == "__main__":
  app.run(main)
