"""Development-time: crop scikit-image's bundled sample images into the renderer's textures.

Run once (needs scikit-image, a test dependency); the JPEGs are committed so that the package
itself never needs scikit-image. Licences: see sam_ros/synthetic/textures/README.md.
"""
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

OUT = Path(__file__).resolve().parents[1] / "sam_ros" / "synthetic" / "textures"
SOURCES = {"astronaut": data.astronaut, "chelsea": data.chelsea, "coffee": data.coffee, "rocket": data.rocket,
           "hubble": data.hubble_deep_field, "retina": data.retina, "brick": data.brick, "grass": data.grass,
           "gravel": data.gravel}
# added for the rich scenes (rich.py), larger so that floors and walls repeat less; grey ones are tinted
MORE_SOURCES = {"camera": data.camera, "coins": data.coins, "text": data.text,
                "ihc": data.immunohistochemistry, "clock": data.clock, "cell": data.cell,
                "checkerboard": data.checkerboard, "astronaut_large": data.astronaut,
                "hubble_large": data.hubble_deep_field, "brick_large": data.brick}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sizes = {**{name: 192 for name in SOURCES}, **{name: 256 for name in MORE_SOURCES}}
    for name, load in {**SOURCES, **MORE_SOURCES}.items():
        image = np.asarray(load())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        h, w = image.shape[:2]
        side = min(h, w)
        crop = image[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2, :3]
        Image.fromarray(crop).resize((sizes[name], sizes[name]), Image.BILINEAR).save(OUT / f"{name}.jpg", quality=85)


if __name__ == "__main__":
    main()
