"""Reference detectors (STIL, DDL, M2TR, StyleFlow, LipForensics): ``dftoolkit.detectors``.

Implemented by the detector issues; the package exists so the install layout is fixed now.
"""
