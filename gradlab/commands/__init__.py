"""The `gradlab` subcommands beyond the reports (which live in `gradlab.cli`)."""
