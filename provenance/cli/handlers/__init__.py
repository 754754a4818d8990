"""The handlers of the subcommands, by area: each is `(system, args) -> exit status`.

A handler reads its arguments, asks the `System` (the composition root) and hands what it gets to a renderer
in `provenance.cli.render`; it builds no adapter itself. Heavy imports (torch, OpenCV, C2PA, Kafka, the
moderation models, the credentials code) stay inside the handlers that need them, so `provenance feed` starts
fast. `provenance.cli.parser` binds each subcommand to its handler.
"""
