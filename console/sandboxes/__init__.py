"""The sandbox domain: lifecycle, files, processes, PTY, watches, uploads, snapshots, lifecycle events, ownership."""
