"""Pure numpy on face-mesh landmarks: head pose, eye openness, pupil distance, image quality.

Sign convention (tested on real clips): angles are the *person's*, in degrees, camera unmirrored.
- yaw   > 0: the person turns their head to their own left (nose moves to image right);
- pitch > 0: the person looks up;
- roll  > 0: the head tilts toward the person's right shoulder (their left eye, image right, rises).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.vision.landmarks import LEFT_PUPIL, RIGHT_PUPIL

# Six-point eye outlines (p1 outer/inner corner ... p6) for the eye aspect ratio, person's right / left.
RIGHT_EYE = (33, 160, 158, 133, 153, 144)
LEFT_EYE = (362, 385, 387, 263, 373, 380)
# Points for the head frame: outer eye corners, forehead, chin, nose tip.
R_EYE_OUTER, L_EYE_OUTER, FOREHEAD, CHIN, NOSE_TIP = 33, 263, 10, 152, 1
# Points for the upper-face frame: the nose bridge between the eyes and the point under the nose.
NOSE_BRIDGE, SUBNASALE = 168, 2
# The nose line (bridge -> subnasale) leans this far from the face's vertical: the median upper-face
# pitch of frontal faces (LFW deep-funneled first photos 6.9, the demo person's frames 7.9 degrees).
UPPER_PITCH_OFFSET_DEG = 7.0


@dataclass(frozen=True)
class Pose:
    """Head rotation in degrees; see the module docstring for the signs."""

    yaw: float
    pitch: float
    roll: float


def head_pose(landmarks: np.ndarray) -> Pose:
    """Yaw, pitch and roll from the mesh's own 3D points (x, y pixels; z depth on x's scale).

    Builds the head's axes from the eye line (person's right -> left) and the chin -> forehead line,
    then reads the angles off that rotation. Weak-perspective, good to a few degrees within +-45.
    """
    p = landmarks.astype(np.float64)
    # Image y points down; flip it so "up" is positive, z toward the camera positive.
    def v(i: int) -> np.ndarray:
        return np.array([p[i, 0], -p[i, 1], -p[i, 2]])

    x_axis = v(L_EYE_OUTER) - v(R_EYE_OUTER)   # person's right -> left eye: image -> right when frontal
    y_axis = v(FOREHEAD) - v(CHIN)
    x_axis /= np.linalg.norm(x_axis) + 1e-9
    y_axis = y_axis - x_axis * np.dot(y_axis, x_axis)
    y_axis /= np.linalg.norm(y_axis) + 1e-9
    z_axis = np.cross(x_axis, y_axis)          # out of the face, toward the camera when frontal
    # z_axis = direction the face points. Turning to the person's own left moves it to image right (+x).
    yaw = np.degrees(np.arctan2(z_axis[0], z_axis[2]))
    pitch = np.degrees(np.arctan2(z_axis[1], np.hypot(z_axis[0], z_axis[2])))
    roll = np.degrees(np.arctan2(x_axis[1], x_axis[0]))
    return Pose(float(yaw), float(pitch), float(roll))


def upper_face_pose(landmarks: np.ndarray) -> Pose:
    """Like ``head_pose``, but the head's vertical axis is the nose line (bridge to subnasale), not
    chin to forehead: tight face crops and passport photos cut the chin and forehead off, the mesh
    then guesses where they are, and ``head_pose`` reads such frontal crops as pitched 15-25 degrees
    down. The nose line is inside every crop that shows the eyes. Its own lean is taken off
    (``UPPER_PITCH_OFFSET_DEG``), so a frontal face reads about 0 as with ``head_pose``.
    """
    p = landmarks.astype(np.float64)

    def v(i: int) -> np.ndarray:
        return np.array([p[i, 0], -p[i, 1], -p[i, 2]])

    x_axis = v(L_EYE_OUTER) - v(R_EYE_OUTER)
    x_axis /= np.linalg.norm(x_axis) + 1e-9
    y_axis = v(NOSE_BRIDGE) - v(SUBNASALE)
    y_axis = y_axis - x_axis * np.dot(y_axis, x_axis)
    y_axis /= np.linalg.norm(y_axis) + 1e-9
    z_axis = np.cross(x_axis, y_axis)
    yaw = np.degrees(np.arctan2(z_axis[0], z_axis[2]))
    pitch = np.degrees(np.arctan2(z_axis[1], np.hypot(z_axis[0], z_axis[2]))) - UPPER_PITCH_OFFSET_DEG
    roll = np.degrees(np.arctan2(x_axis[1], x_axis[0]))
    return Pose(float(yaw), float(pitch), float(roll))


def eye_aspect_ratio(landmarks: np.ndarray, eye: tuple[int, ...]) -> float:
    """Soukupova & Cech's EAR: eyelid gap over eye width; about 0.25-0.35 open, below 0.15 shut."""
    p = landmarks[list(eye), :2].astype(np.float64)
    width = np.linalg.norm(p[0] - p[3])
    if width < 1e-6:
        return 0.0
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2.0 * width))


def ears(landmarks: np.ndarray) -> tuple[float, float]:
    """(EAR of the person's right eye, EAR of their left eye)."""
    return eye_aspect_ratio(landmarks, RIGHT_EYE), eye_aspect_ratio(landmarks, LEFT_EYE)


# Both eyes at least this open (EAR) for the eye region to be embedded: the gate's probes and
# enrolment's templates alike, so a probe is taken under the same rule as the templates it meets.
# Between shut (below 0.15) and open (0.25-0.35) lie squints and the edges of a blink.
EYES_OPEN_EAR = 0.18


def eyes_open(landmarks: np.ndarray) -> bool:
    """Both eyes open enough for the eye region to say who this is (``EYES_OPEN_EAR``)."""
    return min(ears(landmarks)) >= EYES_OPEN_EAR


def pupil_distance(landmarks: np.ndarray) -> float:
    """Distance between the iris centres in pixels: how near the face is."""
    return float(np.linalg.norm(landmarks[RIGHT_PUPIL, :2] - landmarks[LEFT_PUPIL, :2]))


@dataclass(frozen=True)
class Quality:
    """How usable a face is: size (pupil distance px), sharpness (Laplacian variance), brightness (0-255)."""

    pupil_distance: float
    sharpness: float
    brightness: float


def face_quality(image: np.ndarray, landmarks: np.ndarray) -> Quality:
    """Size, sharpness and brightness of the face region of an RGB frame."""
    h, w = image.shape[:2]
    x0, y0 = np.clip(landmarks[:, :2].min(axis=0).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(landmarks[:, :2].max(axis=0).astype(int) + 1, 1, [w, h])
    region = image[y0:y1, x0:x1].astype(np.float32)
    if region.size == 0:
        return Quality(pupil_distance(landmarks), 0.0, 0.0)
    grey = region @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = (-4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:])
    return Quality(pupil_distance(landmarks), float(lap.var()) if lap.size else 0.0, float(grey.mean()))
