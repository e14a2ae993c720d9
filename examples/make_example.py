#!/usr/bin/env python3
"""Write the small example experiment `examples/logs/demo/3_feature768/*.npy`.

Features are a seeded Gaussian mixture shaped like RVC v2 (HuBERT layer 12)
features: 768 columns, utterances of 60-200 frames, runs of frames from one
component. The files are committed, so running this is only needed to
regenerate them; the same seed gives the same bytes.
"""
import os
import sys

import numpy as np


def main(out_dir="examples/logs/demo/3_feature768", n_files=8, d=768, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, size=(40, d)).astype(np.float32) * 2.0
    os.makedirs(out_dir, exist_ok=True)
    for i in range(n_files):
        t = int(rng.integers(60, 200))
        comp = np.repeat(rng.integers(0, len(centres), size=t // 6 + 1), 6)[:t]
        x = centres[comp] + rng.normal(0.0, 1.0, size=(t, d)).astype(np.float32)
        # RVC names slices <file index>_<slice index>.npy.
        np.save(os.path.join(out_dir, f"0_{i}.npy"), x.astype(np.float32), allow_pickle=False)
    print(f"wrote {n_files} files to {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
