"""A trajectory's round files (written once) and resuming from them."""
