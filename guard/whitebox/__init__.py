"""White-box evidence: the host model's own hidden states (Latent Guard, steering, ablation)."""
