"""Runs one config on all hosts of a TPU VM: ``python -m jaxdr.main`` on every worker.

  python -m launch.run --name=jaxdr-pod --accelerator_type=v4-32 \
      --config=configs/quickstart.py --workdir=gs://BUCKET/jaxdr/qs --set=train.epochs=3 --dry_run
"""
from absl import app

from launch import common, tpu_vm

common.declare("name", "zone", "accelerator_type", "project", "config", "workdir", "set", "log",
               "dry_run")

main = common.main_for(lambda: tpu_vm.run_commands(
    common.tpu_from_flags(), common.FLAGS.config, common.FLAGS.workdir,
    tpu_vm.parse_overrides(common.FLAGS.set), log=common.FLAGS.log))

if __name__ == "__main__":
  app.run(main)
