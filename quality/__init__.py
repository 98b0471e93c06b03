"""Dataset quality: Mask-SSIM, perceptual distance and LPIPS, E_warp, feature-space spreads, identity
and expression fidelity, landmark jitter, the report that puts datasets side by side, and the shortcut
audit (can cheap nuisance features tell the reals from the fakes?).

>>> from dftoolkit.quality import mask_ssim, perceptual_distance, ewarp, feature_spread, quality_report, audit
"""

from dftoolkit.quality.audit import AuditReport, audit
from dftoolkit.quality.backbones import BackboneInfo, image_features, load_backbone, resolve_backbone
from dftoolkit.quality.ewarp import ewarp, ewarp_pairs, video_ewarp
from dftoolkit.quality.expression import expression_error, expression_fidelity
from dftoolkit.quality.flow import FLOW_BACKENDS, estimate_flow
from dftoolkit.quality.identity import FaceEmbedder, identity_similarity, video_identity
from dftoolkit.quality.perceptual import LPIPS, Perceptual, lpips_distance, perceptual_distance
from dftoolkit.quality.report import QualityConfig, QualityReport, quality_report
from dftoolkit.quality.scoring import (
    METRICS,
    describe_quality_metrics,
    get_quality_metric,
    list_quality_metrics,
)
from dftoolkit.quality.spread import SpreadStats, feature_spread, plot_spread, tsne_embed
from dftoolkit.quality.ssim import PROTOCOLS, mask_ssim, ssim, ssim_map, video_mask_ssim
from dftoolkit.quality.temporal import landmark_jitter, video_landmark_jitter

__all__ = [
    "FLOW_BACKENDS",
    "LPIPS",
    "METRICS",
    "PROTOCOLS",
    "AuditReport",
    "BackboneInfo",
    "FaceEmbedder",
    "Perceptual",
    "QualityConfig",
    "QualityReport",
    "SpreadStats",
    "audit",
    "describe_quality_metrics",
    "estimate_flow",
    "ewarp",
    "ewarp_pairs",
    "expression_error",
    "expression_fidelity",
    "feature_spread",
    "get_quality_metric",
    "identity_similarity",
    "image_features",
    "landmark_jitter",
    "list_quality_metrics",
    "load_backbone",
    "lpips_distance",
    "mask_ssim",
    "perceptual_distance",
    "plot_spread",
    "quality_report",
    "resolve_backbone",
    "ssim",
    "ssim_map",
    "tsne_embed",
    "video_ewarp",
    "video_identity",
    "video_landmark_jitter",
    "video_mask_ssim",
]
