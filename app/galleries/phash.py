"""Perceptual hashes: near-duplicate photos (re-encoded, resized, slightly cropped) hash close.

imagehash's DCT hash of 64 bits: the sign of the 8x8 lowest frequencies of a 32x32 grey copy.
Two photos are near-duplicates within VISION_GALLERY_DUPLICATE_DISTANCE differing bits (the
README gives the distance and the rates it was measured at).
"""

import imagehash
import numpy as np
import numpy.typing as npt
from PIL import Image

HASH_BITS = 64
# The hash reads a 32 x 32 grey copy; box-reducing the photo to about this side first makes it
# 3-4x cheaper than resampling every decoded pixel (it was 27% of a match's decode time).
_WORKING_SIDE = 128


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit DCT hash of an image, as an unsigned integer."""
    factor = min(image.size) // _WORKING_SIDE
    if factor > 1:
        image = image.reduce(factor)
    return int(str(imagehash.phash(image)), 16)


def hamming_distances(phash: int, stored: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Differing bits between `phash` and each stored hash."""
    # numpy's popcount: 10,000 hashes in ~15 us (unpacking the bits took ~0.7 ms).
    differing = np.bitwise_xor(stored, np.uint64(phash))
    counts: npt.NDArray[np.int64] = np.bitwise_count(differing).astype(np.int64)
    return counts
