"""p2d: curate face photos and drawings, train a CycleGAN between them, and use it."""

__version__ = "0.1.0"
