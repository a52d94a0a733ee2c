"""LDA and its parts: anchors (VQ-VAE over label sequences), OT alignment, the model."""
