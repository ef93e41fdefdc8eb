"""Sharing a trained model: ``mmgen export`` (a self-contained folder with a model card), ``mmgen push``
(that folder to the Hugging Face Hub). Loading an export, from a folder or the Hub, is mmgen.run's.

Owns what an export is written from and the model card. May import: mmgen.errors, mmgen.config,
mmgen.storage, mmgen.plugin, mmgen.recipe, mmgen.run, mmgen.eval.
"""
