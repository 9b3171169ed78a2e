"""The ``microgpt-jax`` program: flags (parser), the subcommands (commands) and the entry point (program).
Nothing here is imported by the library."""
