"""Methods built on the core mask pytree: ``cdrp``/``drnet`` (DRNet), ``car`` (CAR), ...

Each method module ``m`` exposes ``run(config, workdir) -> dict``, which ``jaxdr.main``
calls for ``config.method == m``.
"""
