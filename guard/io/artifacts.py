"""The file layout of a saved guard folder: `guard.json` (format version, host fingerprint, fitted
scalars, policy, fit report) and `latent.safetensors` (the harmfulness and refusal directions).

Reading and writing the folder with checksums is `guard.io.artifact_io`; building a
`LatentGuard` from it is `guard.whitebox.artifacts`.
"""

FORMAT_VERSION = 1
META_FILE = "guard.json"
TENSOR_FILE = "latent.safetensors"

__all__ = ["FORMAT_VERSION", "META_FILE", "TENSOR_FILE"]
