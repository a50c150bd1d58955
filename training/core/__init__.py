"""The task-neutral training core: config, the epoch loop, DDP, checkpoints, run folder, export.

Nothing here imports a task package; tasks (`training.classification`, `training.detection`)
build on it and register in `training.tasks`. See docs/architecture.md.
"""
