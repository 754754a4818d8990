"""Development-only tools: the demo, a tiny CLIP with random weights, synthetic faces, scenes and clips.

The product never imports this package at run time except where development mode is chosen explicitly
(the composition root's development moderator, `provenance demo`); production refuses what it makes.
"""
