"""Detection throughput: `python -m nairstd.train.bench_predict [--size tiny] [--n 20]`.

Times `predict` end to end (read the file, run the model, write the probability PNG, label the
detections) on generated 8-bit 640x512 images with an untrained model of the given size, and the
model's forward pass alone. Prints images/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def bench_predict(
    size: str = "tiny",
    model_name: str = "na_irstd",
    n: int = 20,
    height: int = 512,
    width: int = 640,
    protocol: str = "native",
    device: str = "cpu",
) -> dict:
    from nairstd.models import build_model
    from nairstd.train.predict import predict_files, predict_probability

    torch.manual_seed(0)
    model = build_model(model_name, size).to(device).eval()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i in range(n):
            image = rng.normal(80, 10, (height, width)).clip(0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"img{i:03d}.png")
        # Warm-up (allocator, kernels) outside the timing.
        predict_probability(model, np.zeros((height, width), np.float32), protocol, device=device)
        start = time.perf_counter()
        result = predict_files(
            model, [folder], Path(tmp) / "out", protocol, device=device, log=lambda _: None
        )
        end_to_end = time.perf_counter() - start
    image = rng.random((height, width), dtype=np.float32)
    start = time.perf_counter()
    for _ in range(n):
        predict_probability(model, image, protocol, device=device)
    forward = time.perf_counter() - start
    return {
        "model": model_name,
        "size": size,
        "image": f"{width}x{height}",
        "protocol": protocol,
        "device": device,
        "threads": torch.get_num_threads(),
        "images": n,
        "failures": len(result.failures),
        "images_per_s": n / end_to_end,
        "forward_images_per_s": n / forward,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nairstd.train.bench_predict")
    parser.add_argument("--size", default="tiny", choices=["tiny", "base"])
    parser.add_argument("--model", default="na_irstd")
    parser.add_argument("--n", type=int, default=20, help="images to time")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--protocol", default="native", choices=["native", "resize256"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    r = bench_predict(
        args.size, args.model, args.n, args.height, args.width, args.protocol, args.device
    )
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(
            f"predict {r['model']} ({r['size']}) on {r['images']} {r['image']} images, "
            f"{r['protocol']}, {r['device']} x {r['threads']} threads: "
            f"{r['images_per_s']:.2f} images/s end to end "
            f"({r['forward_images_per_s']:.2f} images/s forward only)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
