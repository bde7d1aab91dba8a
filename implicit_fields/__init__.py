"""implicit_fields: learning 3D reconstruction in function space, in JAX."""

__version__ = "0.1.0"
