"""Creates a Cloud TPU VM (single host or pod slice).

  python -m launch.create --name=jaxdr --accelerator_type=v4-8 --dry_run
  python -m launch.create --name=jaxdr-pod --accelerator_type=v4-32 --project=P
"""
from absl import app

from launch import common, tpu_vm

common.declare("name", "zone", "accelerator_type", "runtime_version", "project", "spot", "dry_run")

main = common.main_for(lambda: tpu_vm.create_commands(common.tpu_from_flags()))

if __name__ == "__main__":
  app.run(main)
