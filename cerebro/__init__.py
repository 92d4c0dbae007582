"""Cerebro: deep-learning model selection on Apache Spark with Model Hopper Parallelism.

``import cerebro`` is cheap: TensorFlow and Spark are imported only by the modules that need
them, so search spaces (``cerebro.tune.hp_choice``) work without starting either.
"""

from __future__ import annotations

import logging

from cerebro.exceptions import CerebroError

__version__ = "0.1.0"
__all__ = ["CerebroError", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
