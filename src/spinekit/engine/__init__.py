"""Training engine: config, train loop, checkpoints, hooks, distributed training."""
