"""Launch scripts (sweeps, studies): `python -m launch.<script>` from a clone's root, or
`python -m fewframes_jax.launch.<script>` anywhere (a clone after `pip install -e .`, or an install):
the package installs as `fewframes_jax.launch`."""
