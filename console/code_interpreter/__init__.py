"""The code interpreter: code run in persistent Jupyter kernels inside sandboxes.

`kernels` starts a kernel in a sandbox and connects to it; `messages` turns the kernel's
messages into the client's events; `executions` runs code and records runs; `contexts`,
`runs` and `artifacts` own those resources; `api` is the /v1 face, `views` the console's.
docs/code-interpreter.md describes the design.
"""
