"""Data sets by name (a registry): files on disk -> normalised device tensors, batched by index."""
