"""Shared core of the object-centric replication monorepo: layers, probability, metrics,
the training loop, Hub I/O and visualisation. `common` never imports `papers`."""
