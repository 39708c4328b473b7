"""SANE: tokenised weights, a transformer autoencoder, property prediction and sampling."""
