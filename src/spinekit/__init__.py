"""spinekit: deep-learning spine image analysis.

Pipeline stages, one package each, data flowing one way:
``io`` -> ``data`` -> ``engine``/``models`` -> ``evaluation``/``clinical`` -> ``reports``;
``cli`` is a thin layer over typed API functions.
"""

__version__ = "0.1.0"
