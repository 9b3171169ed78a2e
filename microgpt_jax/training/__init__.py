"""Training as compiled programs: the scanned train loop, evaluation, sampling, the gradient check and the
vmapped sweep."""
