from pathlib import Path

BUILTIN = "builtin"  # the name a prior source gives the shipped builtin prior
BUILTIN_FOLDER = Path(__file__).resolve().parent / "weights"
