"""Desktop sandboxes: an X screen in a sandbox of the `desktop` template, driven over /v1
(screenshots, input, clipboard, windows, launch, a live VNC stream, recordings) and
watched from the console. docs/desktop.md describes what runs where and why."""
