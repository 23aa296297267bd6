"""Training: the run's configuration, the loop, its steps, optimizer, schedules and checkpoints."""
