# Simulate the GPU machine: packages it lacks cannot be imported.
import sys

BLOCK = {"ai_edge_litert", "ai_edge_quantizer", "annotated_types", "cattrs", "coremltools", "executorch",
         "litert_torch", "litert_converter", "platformdirs", "pydantic", "pydantic_core", "jsonschema",
         "referencing", "ruamel", "pyts", "tflite_micro", "torchao", "tomli", "omegaconf", "hydra", "ray", "xdsl",
         "unicorn", "elftools", "termcolor", "fire", "lark", "kagglehub", "immutabledict", "parameterized",
         "expecttest", "tensorboardX", "truststore", "ordered_set", "cffi", "cryptography", "pycparser",
         "typing_inspection", "antlr4", "kgb", "edgekd_installed_marker"}
class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"blocked (not on the GPU machine): {name}")
        return None
sys.meta_path.insert(0, _Blocker())
