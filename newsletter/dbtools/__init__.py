"""`newsletter db`: the tools that know every component's tables at once (`components`: the
one list of them and `ensure_schema`; `schema`: what a database holds, read from its catalogue;
`copy`: `db migrate`, SQLite into PostgreSQL; `check`: `db check`). The package imports nothing
itself."""
