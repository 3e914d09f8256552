"""Cloud TPU launch scripts for jaxdr: ``python -m launch.<script> --dry_run ...``."""
