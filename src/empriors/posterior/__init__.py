"""E-step posterior samplers: each builds a posterior denoiser d(x_t, sigma | y) for
:func:`empriors.diffusion.sample`."""

from empriors.posterior.mmps import COVARIANCES, MMPSDenoiser, conjugate_gradient

__all__ = ["COVARIANCES", "MMPSDenoiser", "conjugate_gradient"]
