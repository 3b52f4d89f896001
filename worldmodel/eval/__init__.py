"""Downstream evaluations of trained representation learners (NISO: classification under
homographies, latent equivariance error, camera pose from latent maps)."""
