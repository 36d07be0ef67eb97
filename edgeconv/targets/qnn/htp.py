"""What code outside the Hexagon family may use of it (the rest is private to targets/qnn/): a QDQ ONNX graph opened
on the HTP simulator the way the family's edges and runtime open it. The quantizer's target scoring
(quantizers/target_scoring.py) judges its mixed-precision trials with these.

  soc_for(ctx)                         the Snapdragon part of the run (--soc, else compiler.soc, else the default)
  htp_options(soc)                     the HTP execution provider's options for that part
  legalise_for_htp(qdq, out)           the graph rewritten into the data types the HTP takes (→ path, report)
  qnn_session(model, options, config)  an onnxruntime session on the HTP backend (compiles the graph for the part)
"""

from __future__ import annotations

from edgeconv.targets.qnn._ep import htp_options, qnn_session
from edgeconv.targets.qnn._legalise import legalise_for_htp
from edgeconv.targets.qnn.onnx_to_qnn import soc_for

__all__ = ["htp_options", "legalise_for_htp", "qnn_session", "soc_for"]
