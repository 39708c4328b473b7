"""Weight-space learning methods, each one module family behind the one ``Method`` contract."""
