"""Training: the loop (β schedule, validation, NaN stop), the trainer's checkpoints and resume, and
the session ``mmgen train`` runs.

Owns changing weights. May import every layer below it: mmgen.errors, mmgen.config,
mmgen.storage, mmgen.plugin, mmgen.model, mmgen.recipe, mmgen.run, mmgen.eval (the probe).
"""
