"""A training run as a directory on disk: its spec (config.json), the directory's states and lock, the guard
that checkpoints and stops it, fresh runs, resumes, loading a finished run, and sweep directories."""
