"""Fitting: the Latent Guard and the black-box heads, augmentation, calibration, comparison."""
