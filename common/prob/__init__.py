"""Probability: Gaussians and KL, image likelihoods, GECO, free bits."""
from common.prob.free_bits import free_bits
from common.prob.gaussian import DiagonalGaussian, at_least_fp32, kl_standard_normal, softplus_variance, split_params
from common.prob.geco import GECOLagrangeNLL, GECOMultiplicativeKL, geco_for, geco_step_scale
from common.prob.likelihood import gaussian_nll, masked_mean_image, mixture_nll

__all__ = [
    "DiagonalGaussian", "at_least_fp32", "kl_standard_normal", "softplus_variance", "split_params",
    "gaussian_nll", "mixture_nll", "masked_mean_image",
    "GECOLagrangeNLL", "GECOMultiplicativeKL", "geco_for", "geco_step_scale", "free_bits",
]
