"""/v1/volumes routes and the volume watch socket."""
