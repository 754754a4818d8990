"""The shared kernel: what every package may import without importing the application.

Error base classes (one line a user can act on, with an exit code) and the content-addressed blob store.
Nothing here imports `provenance`, `generator`, `moderation` or `projections`.
"""
