"""ldiff: self-configuring denoising-diffusion models that fill and synthesise MS lesions in brain MRI.

Importing the package has no side effects: folders are resolved only when a command needs them.
"""
__version__ = "0.1.0"
