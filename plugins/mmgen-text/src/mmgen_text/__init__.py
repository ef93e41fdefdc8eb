"""mmgen-text: a character-level text modality and MNIST image + label + text, as a mmgen plugin.

mmgen finds it through the ``mmgen`` entry-point group (see this package's pyproject.toml); mmgen's
core never imports it. ``mmgen_text.modality`` registers the ``text`` modality kind,
``mmgen_text.dataset`` the ``mnist_text`` dataset kind and the recipe in ``mmgen_text/recipes``.
"""

__version__ = "0.1.0"
