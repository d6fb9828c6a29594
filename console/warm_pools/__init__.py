"""Warm pools: started sandboxes of a template kept ready for instant checkout
(docs/warm-pools.md). `pools` is the resource, `checkout` the create path that takes
from a pool, `filler` the worker that keeps pools at their target, `shapes` the JSON."""
