"""Shared parts every method builds on, so that no method repeats another's harness.

    model, variables = base.load_or_train(config, workdir)      # pretrained, or trained first
    images, labels = base.arrays(config, "test", limit=1000)    # an in-memory split
    st = state.MethodState(workdir / "civ", fingerprint)        # resumable JSON + orbax arrays
    summary, sliced = compression.compress(model, variables, mask, latency_batch_sizes=(1, 256))
    plots.heatmap(...), plots.bars(...), plots.curves(...), plots.histogram(...)

The padded fixed-shape batch loop is `jaxdr.batching`.
"""
