"""Deletes a Cloud TPU VM.

  python -m launch.delete --name=jaxdr --dry_run
"""
from absl import app

from launch import common, tpu_vm

common.declare("name", "zone", "accelerator_type", "project", "dry_run")

main = common.main_for(lambda: tpu_vm.delete_commands(common.tpu_from_flags()))

if __name__ == "__main__":
  app.run(main)
