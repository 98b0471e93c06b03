"""face_alignment backend: S3FD detection and FAN 68-point landmarks (Bulat & Tzimiropoulos, 2017).

face_alignment downloads its weights on first use, which fails offline, so this backend only
loads them from disk and says where they must go when they are missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dftoolkit.faces.base import FACES_INSTALL, FaceBackend, Faces, register_backend

__all__ = ["FAN_WEIGHTS", "S3FD_WEIGHTS", "FanBackend", "fan_weights"]

S3FD_WEIGHTS = "s3fd-619a316812.pth"
FAN_WEIGHTS = "2DFAN4-11f355bf06.pth.tar"
_URL = "https://www.adrianbulat.com/downloads/python-fan/"


def fan_weights(weights_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Paths of the S3FD and 2D-FAN-4 weights in ``weights_dir`` (default ``torch.hub.get_dir()/checkpoints``,
    i.e. ``$TORCH_HOME/hub/checkpoints``).

    Raises:
        FileNotFoundError: naming each missing file, where it comes from and where to put it.
    """
    import torch

    folder = Path(weights_dir) if weights_dir else Path(torch.hub.get_dir()) / "checkpoints"
    missing = [name for name in (S3FD_WEIGHTS, FAN_WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"face_alignment weights missing: {', '.join(missing)}. Download "
            f"{' and '.join(_URL + name for name in missing)} and place them in {folder} "
            "(or pass weights_dir=<folder holding both files>); they are not fetched here."
        )
    return folder / S3FD_WEIGHTS, folder / FAN_WEIGHTS


def _hint(path: Path) -> str:
    return f"download {_URL + path.name} into {path.parent}"


@register_backend
class FanBackend(FaceBackend):
    """S3FD face detector and the 2D-FAN-4 landmark network of ``face_alignment`` (``LandmarksType.TWO_D``).

    Written for face-alignment 1.5 (its weight files and FAN loader, overridden here to read from
    ``weights_dir``); ``torch.compile`` is off (on a CPU it needs a C++ compiler and a warm-up).

    Args:
        device: torch device, ``"cpu"`` (default) or ``"cuda"`` where a GPU is available.
        weights_dir: folder holding ``s3fd-619a316812.pth`` and ``2DFAN4-11f355bf06.pth.tar``
            (default ``$TORCH_HOME/hub/checkpoints``); checked before any model is built.

    Raises:
        FileNotFoundError: a weight file is missing (named, with where to get it).
        CheckpointError: a weight file is refused by weights-only unpickling (it may run code), is
            unreadable, or does not fit its network (:mod:`dftoolkit.checkpoints`).
    """

    name = "fan"
    description = "face_alignment S3FD detector + 2D-FAN-4 68 landmarks (PyTorch; weights from disk)"

    def __init__(self, *, device: str = "cpu", weights_dir: str | os.PathLike[str] | None = None) -> None:
        s3fd, fan = fan_weights(weights_dir)
        import torch

        from dftoolkit.checkpoints import CheckpointError, fit_state_dict, load_weights

        try:
            import face_alignment
            from face_alignment.models import FAN
        except ImportError as e:
            raise ImportError(f"the fan backend needs face-alignment 1.5.0: {FACES_INSTALL}") from e

        class LocalFaceAlignment(face_alignment.FaceAlignment):
            """FaceAlignment loading FAN from ``fan`` instead of its download cache."""

            def _load_native(
                self, network_name: str, network_size: int, device: str, dtype: torch.dtype
            ) -> torch.nn.Module:
                net = FAN(network_size)
                state = load_weights(fan, what="2D-FAN-4 weights", hint=_hint(fan), map_location=device)
                fit_state_dict(net, state, where=str(fan), hint=_hint(fan))
                return net.to(device, dtype=dtype).eval()

        try:
            self._fa = LocalFaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=device,
                face_detector="sfd",
                face_detector_kwargs={"path_to_detector": str(s3fd)},
                compile=False,
            )
        except CheckpointError:
            raise
        except Exception:  # face_alignment's own S3FD load: say what is wrong with the file, if it is that
            from face_alignment.detection.sfd import net_s3fd

            state = load_weights(s3fd, what="S3FD weights", hint=_hint(s3fd))
            fit_state_dict(net_s3fd.s3fd(), state, where=str(s3fd), hint=_hint(s3fd))
            raise

    def detect(self, image: np.ndarray) -> Faces:
        found = self._fa.face_detector.detect_from_image(np.ascontiguousarray(image).copy())
        rows = np.asarray(found, np.float32).reshape(-1, 5)
        h, w = image.shape[:2]
        boxes = np.clip(rows[:, :4], 0, [w, h, w, h]).astype(np.float32)
        return Faces(boxes, rows[:, 4].copy())

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if not len(boxes):
            return Faces.empty().landmarks
        found = self._fa.get_landmarks_from_image(np.ascontiguousarray(image), detected_faces=boxes.tolist())
        return np.asarray(found, np.float32).reshape(len(boxes), 68, 2)
