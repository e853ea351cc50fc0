"""Triton kernels of trm_fast, installed as trm_fast.kernels."""
