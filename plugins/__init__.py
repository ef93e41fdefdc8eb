"""mmgen's first-party plugins: MNIST image and label modalities, PoE fusion, the MNIST dataset.

They register through the ``mmgen`` entry-point group exactly like a third-party package.
"""
