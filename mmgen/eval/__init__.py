"""Evaluation: IWAE likelihoods, cross-modal accuracy and coherence (with the image judge), the
training probe, pictures, and the whole ``mmgen eval`` report.

Owns every number that says how good a model is. May import: mmgen.errors, mmgen.config,
mmgen.storage, mmgen.plugin, mmgen.model, mmgen.recipe, mmgen.run; never mmgen.train.
"""
