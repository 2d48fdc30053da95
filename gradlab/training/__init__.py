"""Training cells on synthetic long-range tasks, with gradient-flow checkpoints, and the
learnability report (`gradlab train`)."""
