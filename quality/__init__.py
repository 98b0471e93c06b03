"""Dataset quality metrics (Mask-SSIM, perceptual loss, E_warp, feature spreads): ``dftoolkit.quality``.

Implemented by the quality issue; the package exists so the install layout is fixed now.
"""
