"""The `gateway` command (`main`) and what only it uses: `check`, `dry_run`, `plan`,
`rule_tests` (the `test` verb) and `admin` (events, replay, purge against the database)."""
