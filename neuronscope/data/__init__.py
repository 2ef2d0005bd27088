"""Data shipped with neuronscope: real-world facts and benign instructions (see README.md here)."""
