"""fewframes_jax: teacher-student video classification with fewer frames (Bhardwaj et al., CVPR 2019)."""

__version__ = "0.1.0"
