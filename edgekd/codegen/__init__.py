"""C code generation: a fully-integer int8 ``.tflite`` becomes portable C99 with static memory.

``generate_c`` writes ``model.h`` / ``model.c`` (weights and precomputed fixed-point multipliers as constants,
a liveness-planned activation arena) and ``kernels.c`` / ``kernels.h`` (TFLite's integer arithmetic, so the
outputs are bit-identical to TFLite Micro). ``compile_host`` / ``run_host`` build and run it with gcc;
``codegen_model`` (``edgekd codegen``) does all of it and checks the result against TFLite Micro.
"""

from edgekd.codegen.check import codegen_model
from edgekd.codegen.emit import CodegenResult, generate_c
from edgekd.codegen.host import compile_host, run_host
from edgekd.codegen.lower import SUPPORTED

__all__ = ["SUPPORTED", "CodegenResult", "codegen_model", "compile_host", "generate_c", "run_host"]
