"""The Qualcomm Hexagon family (hexagon-* profiles): QDQ ONNX → QNN HTP context binaries (EPContext models) and DLC
files with onnxruntime-qnn, validated on the HTP simulator. Its modules: onnx_to_qnn.py, onnx_to_dlc.py (the edges),
runtime.py (HTP simulator), socs.py (Snapdragon parts), htp.py (what other packages may use: HTP sessions), _ep.py (the
QNN execution provider and its sessions), _compile.py (reproducible compiles), _legalise.py and _widths.py (HTP data
types), _placement.py (which nodes the HTP takes), profiles.toml."""

# this family's backends: distribution -> import name (deps.backend_table: `doctor`, the manifest's versions), and
# the pip extra that installs them
BACKENDS = {"onnxruntime-qnn": "onnxruntime_qnn"}
EXTRA = "qnn"
