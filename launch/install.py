"""Installs jaxdr (and jax[tpu]) on every worker of a TPU VM.

  python -m launch.install --name=jaxdr --repo=https://github.com/ORG/jaxdr.git --dry_run
  python -m launch.install --name=jaxdr-pod --accelerator_type=v4-32 --repo=.   # scp a local checkout
"""
from absl import app

from launch import common, tpu_vm

common.declare("name", "zone", "accelerator_type", "project", "repo", "extras", "apt_packages", "dry_run")

main = common.main_for(lambda: tpu_vm.install_commands(
    common.tpu_from_flags(), common.FLAGS.repo, common.FLAGS.extras, common.FLAGS.apt_packages))

if __name__ == "__main__":
  app.run(main)
