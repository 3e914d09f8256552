"""Methods built on the core mask pytree and `jaxdr.toolkit`: ``drnet`` (DRNet: CDRP
dissection, CCIV sub-tasks), ``car`` (CAR / CARc), ``finetune`` (per-layer-rate fine-tuning).

Each method package ``m`` exposes ``run(config, workdir) -> dict``, which ``jaxdr.main``
calls for ``config.method == m``, and reads its config section only through its options
dataclass (``m.options``, a `jaxdr.options.Options`).
"""
