"""File formats: parameters (safetensors, npz, the original's JSON) and the checkpoint format."""
