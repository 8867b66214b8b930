"""Run the bundle's .tflite on a Raspberry Pi or phone with ai-edge-litert: the smallest complete example.

    python3 device/example.py [SAMPLE.npy]      from the bundle folder; pip install -r device/requirements.txt

SAMPLE.npy holds one raw input, channels-first (the shape in manifest.json ``preprocessing.input_shape``), in
the units the task was trained on (pixels 0..255, sensor units); without it the first test vector is used.
Normalisation and quantization come from manifest.json, so no constant is hard-coded here.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

BUNDLE = Path(os.path.abspath(__file__)).parent.parent  # not resolve(): keep the path as given


def main() -> None:
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    pre = manifest["preprocessing"]
    tflite = [a for a in manifest["artifacts"] if a["format"] == "tflite"]
    art = next((a for a in tflite if a["precision"] == "int8"), tflite[0])
    shape = pre["input_shape"]
    if len(sys.argv) > 1:
        raw = np.load(sys.argv[1], allow_pickle=False).astype(np.float32).reshape(shape)
        norm = pre["normalization"]
        c = np.arange(shape[0]).reshape(-1, *([1] * (len(shape) - 1)))
        x = (raw - np.asarray(norm["mean"], np.float32)[c]) / np.asarray(norm["std"], np.float32)[c]
    else:  # the first test vector: already normalised
        x = np.fromfile(BUNDLE / "vectors" / "input_f32.bin", "<f4", count=int(np.prod(shape))).reshape(shape)
    if pre["layout"] == "NHWC":
        x = np.moveaxis(x, 0, -1)
    it = Interpreter(model_path=str(BUNDLE / art["path"]))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    if art["precision"] == "int8":
        q = art["quantization"]["input"]
        x = np.clip(np.round(x / q["scale"]) + q["zero_point"], -128, 127)
    it.set_tensor(inp["index"], x.reshape(inp["shape"]).astype(inp["dtype"]))
    it.invoke()
    y = it.get_tensor(out["index"])[0].astype(np.float32)
    if art["precision"] == "int8":
        q = art["quantization"]["output"]
        y = q["scale"] * (y - q["zero_point"])
    best = int(y.argmax())
    print(f"{art['path']}: class {manifest['classes'][best]} (score {y[best]:.3f})")


if __name__ == "__main__":
    main()
