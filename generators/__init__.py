"""SR-DF-style synthesis (reenactment, swapping, blending, perturbations): ``dftoolkit.generators``.

Implemented by the synthesis issue; the package exists so the install layout is fixed now.
"""
