"""Preview links (grants) to a sandbox port: the domain, its /v1 routes and console pages."""
