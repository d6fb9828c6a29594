"""/v1 routes and sockets of the sandbox domain (docs/api.md §2 and §7)."""
