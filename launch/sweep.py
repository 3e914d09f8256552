"""Runs a config once per point of a ``--config.*`` grid, one workdir per point.

  python -m launch.sweep --name=jaxdr --config=configs/quickstart.py --workdir=gs://BUCKET/sweep \
      --sweep=train.learning_rate=0.1,0.05 --sweep=seed=0,1 --dry_run
runs 4 jobs, one after another, in gs://BUCKET/sweep/train.learning_rate=0.1,seed=0 etc.
"""
from absl import app

from launch import common, tpu_vm

common.declare("name", "zone", "accelerator_type", "project", "config", "workdir", "set", "sweep",
               "dry_run")

main = common.main_for(lambda: tpu_vm.sweep_commands(
    common.tpu_from_flags(), common.FLAGS.config, common.FLAGS.workdir, common.FLAGS.sweep,
    tpu_vm.parse_overrides(common.FLAGS.set)))

if __name__ == "__main__":
  app.run(main)
