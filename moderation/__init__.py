"""The moderation gate (rendered -> moderated): CLIP-based policy, likeness and real-footage classifiers.

Entry points: `moderation.decision.moderate_video(path, context)` for one video, `moderation.moderator.
Moderator` for a worker that keeps its models loaded, `moderation.training.train_head` / `evaluate` for
the CLI. Nothing heavy is imported here.
"""
