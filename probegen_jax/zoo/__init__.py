"""Model zoos: the ``Zoo`` container, its storage and the generators that train whole zoos."""

from probegen_jax.zoo.store import FORMAT_VERSION, load_zoo, read_zoo_meta, save_zoo
from probegen_jax.zoo.zoo import SPLITS, Zoo

__all__ = ["FORMAT_VERSION", "SPLITS", "Zoo", "load_zoo", "read_zoo_meta", "save_zoo"]
