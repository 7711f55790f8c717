"""The request-scoped features shared by every detector (black-box heads over sentence embeddings)."""
