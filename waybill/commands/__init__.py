"""The `waybill` command line: `main` (the group and the core commands) and one module per command family."""
