"""An example plug-in package for recbole-lda (docs/extending.md): one watch-time model."""
