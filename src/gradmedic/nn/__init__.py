"""What gradmedic knows about PyTorch modules: activation kinds, module taxonomy, static facts."""
