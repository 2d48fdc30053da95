"""The `gradlab` subcommands, which `gradlab.cli` gathers into its command group:
`inspect` (cells, derive, verify, check, shell), `reports` (report, bench, sweep and sweep
merge) and `learning` (train, init)."""
