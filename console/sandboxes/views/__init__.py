"""Console pages of the sandbox domain: list, detail and its fragments, files, processes."""
