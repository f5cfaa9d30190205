"""torchvision.transforms.functional.resize / to_pil_image for the uint8 HxWxC arrays SAM passes."""
import numpy as np
from PIL import Image


def to_pil_image(pic):
    return Image.fromarray(np.asarray(pic))


def resize(img, size):
    """Bilinear resize of a PIL image to (h, w), as torchvision does for PIL inputs."""
    h, w = size
    return img.resize((w, h), Image.BILINEAR)
