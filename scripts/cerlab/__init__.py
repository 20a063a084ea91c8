"""The CER four-site lab (`scripts/lab`) as a package: one module per job.

`topology` is the model (sites, nodes, names, addresses), `state` lab.json, `processes` the
commands and daemons it runs, `config` the files it generates, `network` the namespaces and links,
`daemons` starting each daemon, `views` what the daemons report and whether that is converged,
`provider`/`oci_sign` the provider APIs as an operator uses them, `fabric` the VPC router agent,
`lifecycle`/`actions` the subcommands, `cli` the command line; `chaos` is the seeded soak.
"""
