"""Networks by name (a registry), their initialisation, and how a cohort stacks them."""
