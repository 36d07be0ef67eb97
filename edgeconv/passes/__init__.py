"""Graph rewrites on ONNX that make real exported graphs acceptable to quantizers and target converters. One module
per pass, each a function `model → number of nodes rewritten` (in place), each with its test in tests/passes/."""
