"""Warm pools: started sandboxes of a template kept ready for instant checkout
(docs/warm-pools.md). `models` holds the table, `pools` the resource's rules and
`validation` its fields, `checkout` the create path that takes from a pool, `filler` the
worker that keeps pools at their target, `jobs` its job kinds, `shapes` the JSON, `api`
and `views` the two faces."""
